"""The tokenizer base class: the id <-> token mapping every kind shares, the unknown-symbol
policy, decoding, and the JSON form (``to_dict`` / ``from_dict``), plus the vocabulary checks
and id-list helpers the kinds use. It also states what a kind provides (``kind``, ``build``,
``from_chunks``, ``pieces``). The kinds themselves live in ``tokenizer_plain`` (char, word) and
``tokenizer_bpe``, registered by kind in ``chargen.tokenizer.TOKENIZERS``, which builds and
loads them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chargen.atomic import atomic_write_json
from chargen.errors import ConfigError, TokenizerError

FORMAT = "chargen-tokenizer"
VERSION = 1
UNK = "<unk>"
UNK_TEXT = "\ufffd"
UNKNOWN_POLICIES = ("error", "drop", "warn")
SHOWN_UNKNOWN = 10
EMPTY_TEXT = "cannot build a vocabulary from an empty text"
SMALL_DECODE = 256  # shorter id lists decode in plain Python (cheaper than a NumPy round trip)


class UnknownSymbolsWarning(UserWarning):
    """Symbols of a text that the vocabulary lacks were dropped."""


class Tokenizer:
    """id <-> token mapping with a stated policy for symbols outside the vocabulary.

    A kind is a subclass with its own ``kind`` name and the three classmethods below; it is
    registered in ``chargen.tokenizer.TOKENIZERS``.
    """

    kind: ClassVar[str] = "base"
    # what the kind is, for those who ask rather than dispatch: a token's unit ("character":
    # one per code point), and whether a --lines list can be framed in it (a boundary token)
    unit: ClassVar[str] = "token"
    frames_lines: ClassVar[bool] = True

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None) -> Tokenizer:
        """A new vocabulary of this kind from ``text`` (``max_vocab``: see the kind)."""
        raise NotImplementedError

    @classmethod
    def from_chunks(cls, chunks: Iterable[str], max_vocab: int | None = None) -> Tokenizer:
        """``build`` of the text ``chunks`` join to, streamed: chunks may be cut anywhere and
        memory holds one chunk plus the counts (TokenizerError when there is no text)."""
        raise NotImplementedError

    @classmethod
    def pieces(cls, chunks: Iterable[str]) -> Iterator[str]:
        """``chunks`` re-cut so that encoding each piece and joining the ids equals encoding
        their whole text (this default: as they come, for kinds whose tokens never span two
        characters)."""
        return iter(chunks)

    def __init__(self, vocab: list[str], unk_id: int | None = None) -> None:
        _check_vocab(vocab, unk_id)
        self.vocab: list[str] = list(vocab)
        self.unk_id: int | None = unk_id
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.vocab)}
        self._pieces = [UNK_TEXT if i == unk_id else tok for i, tok in enumerate(self.vocab)]

    def __repr__(self) -> str:
        unk = "" if self.unk_id is None else f", unk_id={self.unk_id}"
        return f"{type(self).__name__}(vocab_size={self.vocab_size}{unk})"

    @property
    def vocab_size(self) -> int:
        """Number of ids, ``<unk>`` included."""
        return len(self.vocab)

    def split(self, text: str) -> list[str]:
        """``text`` cut into tokens (subclasses define how)."""
        raise NotImplementedError

    def _lookup(self, text: str) -> np.ndarray:
        """int64 id per token of ``text``, -1 where the vocabulary lacks it."""
        get = self.stoi.get
        return np.fromiter(map(get, self.split(text), repeat(-1)), dtype=np.int64)

    def unknown_symbols(self, text: str) -> list[str]:
        """Distinct tokens of ``text`` missing from the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(tok for tok in self.split(text) if tok not in self.stoi))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Text -> int64 ids; unknown symbols map to ``<unk>`` if any, else follow ``unknown``.

        ``error`` raises a one-line TokenizerError naming up to 10 of them, ``drop`` drops them,
        ``warn`` drops them with one UnknownSymbolsWarning per call.
        """
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(
                f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}"
            )
        return self._apply_policy(self._lookup(text), text, unknown)

    def _apply_policy(self, ids: np.ndarray, text: str, unknown: str) -> np.ndarray:
        missing = ids < 0
        if not missing.any():
            return ids
        if self.unk_id is not None:
            ids[missing] = self.unk_id
            return ids
        symbols = self.unknown_symbols(text)
        shown = ", ".join(repr(s) for s in symbols[:SHOWN_UNKNOWN])
        more = f" and {len(symbols) - SHOWN_UNKNOWN} more" if len(symbols) > SHOWN_UNKNOWN else ""
        if unknown == "error":
            raise TokenizerError(
                f"{len(symbols)} symbol(s) not in the vocabulary: {shown}{more}; "
                "pass --unknown drop (or --unknown warn) to leave them out"
            )
        if unknown == "warn":
            warnings.warn(
                f"dropped {int(missing.sum())} occurrence(s) of {len(symbols)} symbol(s) not in "
                f"the vocabulary: {shown}{more}",
                UnknownSymbolsWarning,
                stacklevel=3,
            )
        return ids[~missing]

    def token_texts(self, ids: Iterable[int] | np.ndarray | Any) -> list[str]:
        """Each id's own text: ``"".join(token_texts(ids)) == decode(ids)``."""
        seq = _id_list(ids)
        if seq:
            _check_range(min(seq), max(seq), len(self._pieces))
        pieces = self._pieces
        return [pieces[i] for i in seq]

    def decode(self, ids: Iterable[int] | np.ndarray | Any) -> str:
        """ids (list, NumPy or torch, 1-D) -> text; ``<unk>`` becomes U+FFFD."""
        seq = _id_list(ids)
        if not seq:
            return ""
        pieces = self._pieces
        try:
            _check_range(min(seq), max(seq), len(pieces))
            return "".join([pieces[i] for i in seq])
        except TypeError:
            raise TokenizerError("decode takes a 1-D sequence of integer ids") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: format, version, kind, vocab (id order) and the unk id."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "vocab": list(self.vocab),
            "unk": self.unk_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Tokenizer:
        """The tokenizer ``to_dict`` described; TokenizerError (one line) when malformed."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TokenizerError('not a chargen tokenizer (no "format": "chargen-tokenizer")')
        if data.get("version") != VERSION:
            raise TokenizerError(
                f"tokenizer format version {data.get('version')!r} is not supported "
                f"(this chargen reads version {VERSION})"
            )
        from chargen.tokenizer import TOKENIZERS  # the registry imports this module

        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in TOKENIZERS:
            *most, last = TOKENIZERS
            raise TokenizerError(
                f"unknown tokenizer kind {kind!r} (expected {', '.join(most)} or {last})"
            )
        vocab, unk = data.get("vocab"), data.get("unk")
        if not isinstance(vocab, list):
            raise TokenizerError("tokenizer vocabulary must be a list of strings")
        return TOKENIZERS[kind]._from_parts(vocab, unk, data)

    @classmethod
    def _from_parts(cls, vocab: list[str], unk: Any, data: dict[str, Any]) -> Tokenizer:
        """The tokenizer of a checked ``vocab`` and ``unk``; a kind with more fields reads them
        from ``data``."""
        return cls(vocab, unk)

    def save(self, path: str | Path) -> None:
        """Write the JSON form atomically (UTF-8, non-ASCII symbols kept as they are)."""
        atomic_write_json(path, self.to_dict())


def _check_vocab(vocab: Any, unk_id: Any) -> None:
    """TokenizerError (one line) unless ``vocab`` is distinct non-empty strings and ``unk_id`` fits."""
    if not isinstance(vocab, list) or not vocab:
        raise TokenizerError("a vocabulary needs at least one symbol")
    if not all(isinstance(tok, str) and tok for tok in vocab):
        raise TokenizerError("tokenizer vocabulary must be a list of non-empty strings")
    if len(set(vocab)) != len(vocab):
        raise TokenizerError("a vocabulary must not repeat a symbol")
    if unk_id is not None:
        if isinstance(unk_id, bool) or not isinstance(unk_id, int):
            raise TokenizerError(f"tokenizer unk id must be an integer or null, got {unk_id!r}")
        if not 0 <= unk_id < len(vocab) or vocab[unk_id] != UNK:
            raise TokenizerError(f"tokenizer unk id {unk_id} does not point at {UNK}")
    elif UNK in vocab:  # never a plain token: the word pattern splits it into "<", "unk", ">"
        raise TokenizerError(f"tokenizer vocabulary holds {UNK} but no unk id")


def _ranked_vocab(counts: Mapping[str, int], max_vocab: int | None) -> tuple[list[str], int | None]:
    """(vocab, unk_id): all tokens sorted, or ``<unk>`` + the ``max_vocab - 1`` most frequent."""
    if not counts:
        raise TokenizerError(EMPTY_TEXT)
    if max_vocab is None:
        return sorted(counts), None
    if isinstance(max_vocab, bool) or not isinstance(max_vocab, int) or max_vocab < 2:
        raise ConfigError(
            f"--max-vocab must be an integer >= 2 (a token and <unk>), got {max_vocab!r}"
        )
    first = {tok: i for i, tok in enumerate(counts)}
    kept = sorted(counts, key=lambda t: (-counts[t], first[t]))[: max_vocab - 1]
    return [UNK, *sorted(kept)], 0


def _id_list(ids: Any) -> list[Any]:
    """A list of ids from a list, tuple, NumPy array or torch tensor (1-D)."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (int, str, bytes)) or not isinstance(ids, Iterable):
        raise TokenizerError("decode takes a 1-D sequence of integer ids")
    return list(ids)


def _id_array(ids: Any) -> np.ndarray:
    """A 1-D integer NumPy array from a list, tuple, NumPy array or torch tensor (any device)."""
    if hasattr(ids, "detach"):
        ids = ids.detach().cpu().numpy()
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError):
        raise TokenizerError("decode takes a 1-D sequence of integer ids") from None
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TokenizerError("decode takes a 1-D sequence of integer ids")
    return arr


def _check_range(low: int, high: int, size: int) -> None:
    """TokenizerError unless every id lies in ``[0, size)``."""
    if low < 0 or high >= size:
        bad = low if low < 0 else high
        raise TokenizerError(f"id {bad} is outside the vocabulary of {size} symbols")
