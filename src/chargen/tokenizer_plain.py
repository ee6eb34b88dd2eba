"""The character and word tokenizers, and the cutting of text into pieces that no word token
spans, which the word and BPE kinds encode piece by piece: a long text (``_word_pieces``,
``CHUNK_CHARS``) or a stream of chunks (``cut_at_words``).

Character ids follow the code-point order of the distinct characters of the training text;
encoding is vectorised with NumPy (no per-character Python loop). Word tokens are the matches
of ``WORD_PATTERN`` (words, single punctuation marks, whitespace runs).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any

import numpy as np

from chargen.errors import TokenizerError
from chargen.tokenizer_base import (
    EMPTY_TEXT,
    SMALL_DECODE,
    Tokenizer,
    _check_range,
    _id_array,
    _ranked_vocab,
)

WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\s+")
CHUNK_CHARS = 1 << 20  # long texts are encoded in pieces so temporaries stay small
_WORD_CUT = re.compile(r"\S\s")  # a place no word token spans: just before a whitespace run


class CharTokenizer(Tokenizer):
    """One token per Unicode code point; encoding is vectorised with NumPy."""

    kind = "char"
    unit = "character"

    def __init__(self, vocab: list[str], unk_id: int | None = None) -> None:
        super().__init__(vocab, unk_id)
        if any(len(tok) != 1 for i, tok in enumerate(self.vocab) if i != unk_id):
            raise TokenizerError("a character vocabulary holds single characters (and <unk>)")
        ids = np.array([i for i in range(self.vocab_size) if i != unk_id], dtype=np.int64)
        points = np.array([ord(self.vocab[i]) for i in ids], dtype=np.int64)
        # code point -> id, one past the largest known code point: take(mode="clip") sends every
        # larger code point to that last slot, which holds -1 (unknown)
        self._table = np.full(int(points.max(initial=-1)) + 2, -1, dtype=np.int64)
        self._table[points] = ids
        # id -> code point, for vectorised decoding (<unk> -> U+FFFD)
        self._points = np.array([ord(p) for p in self._pieces], dtype=np.uint32)

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None) -> CharTokenizer:
        """Vocabulary of ``text``'s distinct characters in code-point order (see ``from_counts``)."""
        if not text:
            raise TokenizerError(EMPTY_TEXT)
        if max_vocab is None:
            return cls(sorted(set(text)))
        return cls.from_counts(Counter(text), max_vocab)

    @classmethod
    def from_chunks(cls, chunks: Iterable[str], max_vocab: int | None = None) -> CharTokenizer:
        """``build`` of the text ``chunks`` join to, streamed (only ``max_vocab`` counts)."""
        if max_vocab is None:
            symbols: set[str] = set()
            for chunk in chunks:
                symbols.update(chunk)
            if not symbols:
                raise TokenizerError(EMPTY_TEXT)
            return cls(sorted(symbols))
        counts: Counter[str] = Counter()  # only needed to rank symbols for max_vocab
        for chunk in chunks:
            counts.update(chunk)
        return cls.from_counts(counts, max_vocab)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], max_vocab: int | None = None) -> CharTokenizer:
        """Vocabulary from character counts whose insertion order is first appearance."""
        return cls(*_ranked_vocab(counts, max_vocab))

    def split(self, text: str) -> list[str]:
        """One token per character."""
        return list(text)

    def _lookup(self, text: str) -> np.ndarray:
        """int64 id per character, -1 where the vocabulary lacks it (in 1M-char pieces)."""
        out = np.empty(len(text), dtype=np.int64)
        for start in range(0, len(text), CHUNK_CHARS):
            points = _code_points(text[start : start + CHUNK_CHARS])
            self._table.take(
                points.view(np.int32), mode="clip", out=out[start : start + len(points)]
            )
        return out

    def decode(self, ids: Iterable[int] | np.ndarray | Any) -> str:
        """ids (list, NumPy or torch, 1-D) -> text; long inputs are decoded without a Python loop."""
        if isinstance(ids, (list, tuple)) and len(ids) < SMALL_DECODE:
            return super().decode(ids)
        arr = _id_array(ids)
        if not arr.size:
            return ""
        _check_range(int(arr.min()), int(arr.max()), self.vocab_size)
        return self._points.take(arr).tobytes().decode("utf-32-le", "surrogatepass")

    def unknown_symbols(self, text: str) -> list[str]:
        """Distinct characters missing from the vocabulary, in order of first appearance."""
        missing = np.flatnonzero(self._lookup(text) < 0)
        if not len(missing):
            return []
        return list(dict.fromkeys(text[i] for i in missing.tolist()))


class WordTokenizer(Tokenizer):
    """Words, single punctuation marks and whitespace runs; ``<unk>`` when built with ``max_vocab``."""

    kind = "word"

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary of ``text``'s distinct tokens, sorted (see ``from_counts`` for ``max_vocab``)."""
        counts: Counter[str] = Counter()
        for piece in _word_pieces(text):
            counts.update(WORD_PATTERN.findall(piece))
        return cls.from_counts(counts, max_vocab)

    @classmethod
    def from_chunks(cls, chunks: Iterable[str], max_vocab: int | None = None) -> WordTokenizer:
        """``build`` of the text ``chunks`` join to, streamed (cut by ``pieces``)."""
        counts: Counter[str] = Counter()
        for piece in cut_at_words(chunks):
            counts.update(WORD_PATTERN.findall(piece))
        return cls.from_counts(counts, max_vocab)

    @classmethod
    def pieces(cls, chunks: Iterable[str]) -> Iterator[str]:
        """Chunks re-cut where no word token spans a cut (``cut_at_words``)."""
        return cut_at_words(chunks)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary from token counts whose insertion order is first appearance.

        Without ``max_vocab``: every token, sorted, no ``<unk>``. With it: ``<unk>`` at id 0 plus
        the ``max_vocab - 1`` most frequent tokens (ties: first seen first), sorted.
        """
        return cls(*_ranked_vocab(counts, max_vocab))

    def split(self, text: str) -> list[str]:
        """Words, single punctuation marks and whitespace runs, in order."""
        return WORD_PATTERN.findall(text)

    def _lookup(self, text: str) -> np.ndarray:
        """int64 id per token, -1 where unknown; long texts go in pieces (no full token list)."""
        get = self.stoi.get
        parts = [
            np.fromiter(map(get, WORD_PATTERN.findall(piece), repeat(-1)), dtype=np.int64)
            for piece in _word_pieces(text)
        ]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _code_points(text: str) -> np.ndarray:
    """uint32 code point of every character (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _word_pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of about ``CHUNK_CHARS`` cut just before a whitespace run.

    No token spans such a cut, so tokenising the pieces one by one equals tokenising the whole.
    """
    start = 0
    while len(text) - start > CHUNK_CHARS:
        match = _WORD_CUT.search(text, start + CHUNK_CHARS)
        if match is None:
            break
        yield text[start : match.start() + 1]
        start = match.start() + 1
    if start < len(text):
        yield text[start:]


def cut_at_words(chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut a stream of chunks at the start of each one's last whitespace run (a word and the
    whitespace after it wait for the next chunk), so no word token is split."""
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = len(text)
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        while cut > 0 and not text[cut - 1].isspace():
            cut -= 1
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        if cut == 0:
            carry = text
            continue
        yield text[:cut]
        carry = text[cut:]
    if carry:
        yield carry
