"""Vocabularies: characters (default) or words, with encode/decode and an unknown-symbol policy.

Character ids follow code-point order of the distinct characters of the training text. Word
tokens are the matches of ``\\w+|[^\\w\\s]|\\s+`` (words, single punctuation marks, whitespace
runs), so ``decode(encode(text)) == text``. With ``max_vocab`` the word vocabulary keeps the most
frequent tokens plus ``<unk>`` (counted in ``max_vocab``); ``<unk>`` decodes to U+FFFD.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from chargen.atomic import atomic_write_json
from chargen.errors import TokenizerError

FORMAT = "chargen-tokenizer"
VERSION = 1
UNK = "<unk>"
UNK_TEXT = "\ufffd"
WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\s+")
UNKNOWN_POLICIES = ("error", "drop", "warn")
MAX_CODE_POINT = 0x10FFFF


class UnknownSymbolsWarning(UserWarning):
    """Symbols of a text that the vocabulary lacks were dropped."""


class Tokenizer:
    """id <-> token mapping with a stated policy for symbols outside the vocabulary."""

    kind = "base"

    def __init__(self, vocab: list[str], unk_id: int | None = None) -> None:
        if not vocab:
            raise TokenizerError("a vocabulary needs at least one symbol")
        if len(set(vocab)) != len(vocab):
            raise TokenizerError("a vocabulary must not repeat a symbol")
        self.vocab = list(vocab)
        self.unk_id = unk_id
        self.stoi = {tok: i for i, tok in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # subclasses split text into tokens
    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def unknown_symbols(self, text: str) -> list[str]:
        """Distinct tokens of ``text`` missing from the vocabulary, in order of first appearance."""
        seen: dict[str, None] = {}
        for tok in self.split(text):
            if tok not in self.stoi:
                seen.setdefault(tok, None)
        return list(seen)

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Text -> int64 ids. Unknown symbols: map to ``<unk>`` if there is one, else follow ``unknown``."""
        if unknown not in UNKNOWN_POLICIES:
            raise TokenizerError(
                f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}"
            )
        ids = [self.stoi.get(tok, -1) for tok in self.split(text)]
        return self._apply_policy(np.array(ids, dtype=np.int64), text, unknown)

    def _apply_policy(self, ids: np.ndarray, text: str, unknown: str) -> np.ndarray:
        missing = ids < 0
        if not missing.any():
            return ids
        if self.unk_id is not None:
            ids[missing] = self.unk_id
            return ids
        symbols = self.unknown_symbols(text)
        shown = ", ".join(repr(s) for s in symbols[:10]) + (" ..." if len(symbols) > 10 else "")
        if unknown == "error":
            raise TokenizerError(
                f"{len(symbols)} symbol(s) not in the model's vocabulary: {shown}; "
                "pass --unknown drop to drop them"
            )
        if unknown == "warn":
            warnings.warn(
                f"dropped {len(symbols)} symbol(s) not in the vocabulary: {shown}",
                UnknownSymbolsWarning,
                stacklevel=3,
            )
        return ids[~missing]

    def decode(self, ids: Iterable[int] | np.ndarray | Any) -> str:
        """ids -> text (``<unk>`` becomes U+FFFD)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        try:
            return "".join(UNK_TEXT if i == self.unk_id else self.vocab[i] for i in ids)
        except (IndexError, TypeError):
            raise TokenizerError(
                f"an id outside the vocabulary of {self.vocab_size} symbols"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "vocab": self.vocab,
            "unk": self.unk_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Tokenizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TokenizerError("not a chargen tokenizer")
        if data.get("version") != VERSION:
            raise TokenizerError(
                f"tokenizer format version {data.get('version')!r} is not supported"
            )
        vocab, unk, kind = data.get("vocab"), data.get("unk"), data.get("kind")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise TokenizerError("tokenizer vocabulary must be a list of strings")
        if unk is not None and not (isinstance(unk, int) and 0 <= unk < len(vocab)):
            raise TokenizerError("tokenizer unk id is out of range")
        classes = {"char": CharTokenizer, "word": WordTokenizer}
        if kind not in classes:
            raise TokenizerError(f"unknown tokenizer kind {kind!r}")
        return classes[kind](vocab, unk)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())


class CharTokenizer(Tokenizer):
    """One token per Unicode code point; encoding is vectorised with NumPy."""

    kind = "char"

    def __init__(self, vocab: list[str], unk_id: int | None = None) -> None:
        if any(len(tok) != 1 for tok in vocab if tok != UNK):
            raise TokenizerError("a character vocabulary holds single characters")
        super().__init__(vocab, unk_id)
        points = np.array([ord(t) if t != UNK else -1 for t in self.vocab], dtype=np.int64)
        # dense code point -> id table (4.5 MB): one gather per character, no search
        self._table = np.full(MAX_CODE_POINT + 1, -1, dtype=np.int32)
        valid = points >= 0
        self._table[points[valid]] = np.flatnonzero(valid).astype(np.int32)

    @classmethod
    def build(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def split(self, text: str) -> list[str]:
        return list(text)

    def unknown_symbols(self, text: str) -> list[str]:
        ids = self._lookup(text)
        points = _code_points(text)[ids < 0]
        _, first = np.unique(points, return_index=True)
        return [chr(int(points[i])) for i in sorted(first)]

    def _lookup(self, text: str) -> np.ndarray:
        """int32 id per character, -1 where the vocabulary lacks it."""
        return self._table[_code_points(text)]

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        if unknown not in UNKNOWN_POLICIES:
            raise TokenizerError(
                f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}"
            )
        return self._apply_policy(self._lookup(text).astype(np.int64), text, unknown)


class WordTokenizer(Tokenizer):
    """Words, single punctuation marks and whitespace runs; optional ``<unk>`` past ``max_vocab``."""

    kind = "word"

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None) -> WordTokenizer:
        return cls.from_counts(Counter(WORD_PATTERN.findall(text)), max_vocab)

    @classmethod
    def from_counts(cls, counts: Counter[str], max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary from token counts whose insertion order is first appearance.

        Past ``max_vocab`` the most frequent ``max_vocab - 1`` tokens are kept (ties: first
        seen first) plus ``<unk>``.
        """
        if max_vocab is None or len(counts) <= max_vocab:
            return cls(sorted(counts))
        if max_vocab < 2:
            raise TokenizerError("--max-vocab must be at least 2 (one word and <unk>)")
        first = {tok: i for i, tok in enumerate(counts)}
        ranked = sorted(counts, key=lambda t: (-counts[t], first[t]))[: max_vocab - 1]
        return cls([UNK, *sorted(ranked)], 0)

    def split(self, text: str) -> list[str]:
        return WORD_PATTERN.findall(text)


def _code_points(text: str) -> np.ndarray:
    """uint32 code point of every character (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def build_tokenizer(kind: str, text: str, *, max_vocab: int | None = None) -> Tokenizer:
    """A new vocabulary of ``kind`` (``char`` | ``word``) from ``text``."""
    if kind == "char":
        return CharTokenizer.build(text)
    if kind == "word":
        return WordTokenizer.build(text, max_vocab)
    raise TokenizerError(f"--tokenizer must be char or word, got {kind!r}")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer JSON file; TokenizerError naming the file when missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: unreadable or corrupt tokenizer ({exc})") from None
    try:
        return Tokenizer.from_dict(data)
    except TokenizerError as exc:
        raise TokenizerError(f"{path}: {exc}") from None
