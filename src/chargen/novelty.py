"""Novelty: what in generated text is new, and what was copied from the training data.

Two indexes, one per kind of output:

* ``ItemIndex`` — for short items (names, titles, one line each): an exact-match label,
  ``"train"``, ``"val"`` or ``"new"``, and the summary line
  ``new 271/300 (90.3%), in train 20, in val 9``.
* ``CorpusIndex`` — for prose: a suffix array over the training text answers "what is the
  longest piece of this text that appears verbatim in the corpus" (``longest_copy``) and
  "which pieces were copied" (``copied_spans``), with offsets in characters.

Representation. The suffix array is built by libdivsufsort (``pydivsufsort``), which sorts
byte strings; for wider integers it sorts their big-endian bytes and keeps the suffixes that
start on an element boundary, which orders them exactly as the integer sequences. So the
corpus is stored as one *dense code* per character (its rank in the sorted set of distinct
characters): one byte per character when the corpus has at most 256 distinct characters (all
English/European text), two bytes up to 65,536, four beyond. Offsets are then character
offsets with no conversion, and a query compares plain ``bytes`` (memcmp). UTF-8 was the
alternative; it costs the same for ASCII but 2-3 bytes for other characters, lets a match
end inside a character and needs a byte-to-character table (4-8 more bytes per character).

Size: the codes (1, 2 or 4 bytes per character) plus the suffix array (4 bytes per
character, 8 past 2**31 characters). ``save`` writes both as ``.npy`` files that ``load``
memory-maps, so a prepared corpus's index is built once and opened in milliseconds.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydivsufsort import divsufsort

from chargen.atomic import atomic_write_text, atomic_write_with
from chargen.errors import CheckpointError, ConfigError, CorpusError

Label = Literal["train", "val", "new"]

FORMAT = "chargen-novelty-index"
VERSION = 1
META = "meta.json"  # written last: its presence marks a complete index folder
CODES = "codes.npy"
SUFFIXES = "sa.npy"
_HEAD_BYTES = 32  # bytes of a suffix compared before the rest of a long query window
_FIRST_CAP = 64  # characters of the query compared at first; doubled while the match fills it


# --------------------------------------------------------------------------- items


class ItemIndex:
    """Exact-match lookup of generated items among the run's training and validation items.

    An item is whatever the caller splits the data into (typically one line, without its line
    break); matching is exact, character for character, with no normalisation.
    """

    def __init__(self, train_items: Iterable[str], val_items: Iterable[str] = ()) -> None:
        self._train = frozenset(train_items)
        self._val = frozenset(val_items)

    def label(self, item: str) -> Label:
        """``"train"`` if ``item`` is a training item (also when it is a validation item too),
        else ``"val"`` if it is a validation item, else ``"new"``."""
        if item in self._train:
            return "train"
        if item in self._val:
            return "val"
        return "new"

    def labels(self, items: Iterable[str]) -> list[Label]:
        """``label`` of each item, in order."""
        return [self.label(item) for item in items]

    @staticmethod
    def summary(labels: Iterable[str]) -> str:
        """``new N/TOTAL (P%), in train T, in val V``, P with one decimal (0.0% for no items).

        ValueError on a label other than ``train``, ``val`` or ``new``.
        """
        counts = Counter(labels)
        unknown = set(counts) - {"train", "val", "new"}
        if unknown:
            raise ValueError(f"unknown novelty labels: {sorted(unknown)}")
        total = sum(counts.values())
        share = 100.0 * counts["new"] / total if total else 0.0
        return (
            f"new {counts['new']}/{total} ({share:.1f}%), "
            f"in train {counts['train']}, in val {counts['val']}"
        )


# --------------------------------------------------------------------------- prose


class Span(NamedTuple):
    """``text[text_offset : text_offset + length] == corpus[corpus_offset : corpus_offset + length]``
    (offsets and length in characters). ``_asdict()`` is the JSON object of the report."""

    length: int
    text_offset: int
    corpus_offset: int


class CorpusIndex:
    """Suffix array over a training text, for finding the parts of a text copied from it.

    For a query ``text`` let ``match(i)`` be the longest prefix of ``text[i:]`` that occurs in
    the corpus (the *matching statistics*). ``longest_copy`` is the longest of them;
    ``copied_spans`` are the maximal ones: a span ``text[i:i+L]`` that occurs in the corpus
    while neither ``text[i-1:i+L]`` nor ``text[i:i+L+1]`` does. Each position costs one binary
    search of the suffix array (``log2(n)`` byte comparisons of at most the match length) and
    two common-prefix computations with the neighbouring suffixes, one of which shares the
    longest prefix with the query.
    """

    def __init__(self, codes: np.ndarray, suffixes: np.ndarray, alphabet: Sequence[str]) -> None:
        """Wrap prebuilt arrays (use ``build``, ``from_ids`` or ``load``).

        ``codes``: one code per corpus position, dtype uint8, ``>u2`` or ``>u4``;
        ``suffixes``: its suffix array (int32 or int64); ``alphabet[c]``: the symbol of code
        ``c``. Symbols that are not one character (e.g. ``<unk>``) never match a query.
        """
        if codes.dtype not in (np.dtype(np.uint8), np.dtype(">u2"), np.dtype(">u4")):
            raise ValueError(f"codes must be uint8, >u2 or >u4, not {codes.dtype}")
        if codes.ndim != 1 or suffixes.shape != codes.shape:
            raise ValueError("codes and suffixes must be 1-D and of the same length")
        self.codes = codes
        self.suffixes = suffixes
        self.alphabet = list(alphabet)
        self._code = {sym: c for c, sym in enumerate(self.alphabet) if len(sym) == 1}
        self._width = codes.dtype.itemsize
        self._bytes = codes.view(np.uint8).data  # .data: memoryview(array), typed as such
        self._sa = suffixes.data

    # ----------------------------------------------------------------- building

    @classmethod
    def build(cls, text: str) -> CorpusIndex:
        """Index ``text`` (any Unicode, lone surrogates included)."""
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        present = np.flatnonzero(np.bincount(points)) if len(points) else np.zeros(0, np.int64)
        dtype = _code_dtype(len(present))
        table = np.zeros(int(present[-1]) + 1 if len(present) else 1, dtype=dtype.newbyteorder("="))
        table[present] = np.arange(len(present))
        codes = table[points].astype(dtype)
        return cls(codes, _suffix_array(codes), [chr(p) for p in present])

    @classmethod
    def from_ids(cls, ids: np.ndarray, symbols: Sequence[str]) -> CorpusIndex:
        """Index a corpus already encoded by a character tokenizer (e.g. a prepared, memory-mapped
        ``tokens.bin``): ``symbols[i]`` is the vocabulary entry of id ``i``. Offsets are then in
        tokens, which are characters; multi-character entries such as ``<unk>`` never match."""
        dtype = _code_dtype(len(symbols))
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(symbols)):
            raise CorpusError(f"token ids outside the vocabulary of {len(symbols)} symbols")
        codes = np.ascontiguousarray(ids, dtype=dtype)
        return cls(codes, _suffix_array(codes), symbols)

    def __len__(self) -> int:
        """Corpus length in characters."""
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        """Size of the index (codes and suffix array), in bytes: what ``save`` writes."""
        return int(self.codes.nbytes + self.suffixes.nbytes)

    # ----------------------------------------------------------------- queries

    def longest_copy(self, text: str) -> Span:
        """The longest substring of ``text`` that occurs in the corpus; the first one in ``text``
        when several are as long. ``Span(0, 0, 0)`` when no character of ``text`` does."""
        return _longest(*self.matching_statistics(text))

    def copied_spans(self, text: str, min_span: int = 20) -> list[Span]:
        """Every maximal copied span of at least ``min_span`` characters, by ``text_offset``.

        A span ``text[i:i+L]`` is maximal when it occurs in the corpus and neither
        ``text[i-1:i+L]`` nor ``text[i:i+L+1]`` does. Both its start and its end are then
        strictly greater than those of the maximal span before it, so no reported span lies
        inside another, but two may overlap (merge them to highlight). ``corpus_offset`` is one
        occurrence. ConfigError when ``min_span < 1``.
        """
        if min_span < 1:
            raise ConfigError(f"min_span must be at least 1, got {min_span}")
        return _maximal(*self.matching_statistics(text), min_span)

    def report(self, text: str, min_span: int = 20) -> dict[str, Any]:
        """The JSON report: ``{"longest": {"length", "text_offset", "corpus_offset"},
        "spans": [the same for each of copied_spans(text, min_span)]}`` (one search)."""
        if min_span < 1:
            raise ConfigError(f"min_span must be at least 1, got {min_span}")
        lengths, where = self.matching_statistics(text)
        return {
            "longest": _longest(lengths, where)._asdict(),
            "spans": [span._asdict() for span in _maximal(lengths, where, min_span)],
        }

    def matching_statistics(self, text: str) -> tuple[list[int], list[int]]:
        """``(lengths, offsets)``: for each position ``i`` of ``text``, the length of the longest
        prefix of ``text[i:]`` that occurs in the corpus and one corpus offset where it does
        (0 and 0 when none). ``lengths[i+1] >= lengths[i] - 1`` always holds."""
        m, n, w = len(text), len(self.suffixes), self._width
        lengths, where = [0] * m, [0] * m
        if not m or not n:
            return lengths, where
        query, stops = self._encode(text)
        buf, sa = self._bytes, self._sa
        previous = 0
        for i in range(m):
            room = stops[i] - i  # characters before the next one the corpus lacks
            if room == 0:
                previous = 0
                continue
            cap = min(room, max(_FIRST_CAP, 2 * previous))
            while True:
                pattern = query[i * w : (i + cap) * w]
                size = len(pattern)
                head = pattern[:_HEAD_BYTES]  # compare a head first: most suffixes differ there
                lo, hi = 0, n  # first suffix >= pattern (suffixes shorter than it compare short)
                while lo < hi:
                    mid = (lo + hi) >> 1
                    start = sa[mid] * w
                    suffix = buf[start : start + _HEAD_BYTES].tobytes()
                    if suffix == head and size > _HEAD_BYTES:
                        suffix = buf[start : start + size].tobytes()
                    if suffix < pattern:
                        lo = mid + 1
                    else:
                        hi = mid
                best = at = 0  # the best match is one of the two suffixes around that point
                for k in (lo - 1, lo):
                    if 0 <= k < n:
                        start = sa[k] * w
                        got = _common_prefix(pattern, buf[start : start + size].tobytes()) // w
                        if got > best:
                            best, at = got, sa[k]
                if best < cap or cap == room:
                    break
                cap = min(room, 2 * cap)  # the match filled the window: look further
            lengths[i], where[i], previous = best, at, best
        return lengths, where

    def _encode(self, text: str) -> tuple[bytes, list[int]]:
        """The query in the corpus's code bytes, and for each position the index of the next
        character the corpus lacks (``len(text)`` when none); those code as 0 and never match."""
        codes = [self._code.get(ch, -1) for ch in text]
        stops = [0] * len(codes)
        stop = len(codes)
        for i in range(len(codes) - 1, -1, -1):
            if codes[i] < 0:
                stop = i
                codes[i] = 0
            stops[i] = stop
        return np.array(codes, dtype=self.codes.dtype).tobytes(), stops

    # ----------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index into folder ``path`` (created if missing): ``codes.npy``, ``sa.npy``,
        then ``meta.json``. Each file is replaced atomically and meta.json is removed first and
        written last, so a crash leaves either a complete index or none. CheckpointError when
        the folder cannot be written."""
        folder = Path(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / META).unlink(missing_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot write {folder}: {exc.strerror or exc}") from None
        _save_array(folder / CODES, self.codes)
        _save_array(folder / SUFFIXES, self.suffixes)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "length": len(self),
            "alphabet": self.alphabet,
        }
        atomic_write_text(folder / META, json.dumps(meta, ensure_ascii=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = True) -> CorpusIndex:
        """Open an index folder written by ``save``; memory-mapped (read-only) unless ``mmap`` is
        False. CorpusError naming the file when it is missing, foreign or damaged."""
        folder = Path(path)
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorpusError(f"{folder / META}: unreadable novelty index ({exc})") from None
        if not isinstance(meta, dict):
            meta = {}
        if (meta.get("format"), meta.get("version")) != (FORMAT, VERSION):
            raise CorpusError(f"{folder / META}: not a novelty index of version {VERSION}")
        alphabet, length = meta.get("alphabet"), meta.get("length")
        if not isinstance(alphabet, list) or not all(isinstance(s, str) for s in alphabet):
            raise CorpusError(f"{folder / META}: the alphabet is not a list of strings")
        arrays = []
        for name, dtypes in ((CODES, (_code_dtype(len(alphabet)),)), (SUFFIXES, _SA_DTYPES)):
            try:
                array = np.load(folder / name, mmap_mode="r" if mmap else None)
            except (OSError, ValueError) as exc:
                raise CorpusError(f"{folder / name}: unreadable ({exc})") from None
            if array.dtype not in dtypes or array.shape != (length,):
                raise CorpusError(
                    f"{folder / name}: {array.dtype} {array.shape}, meta.json promises {length} "
                    f"entries of {' or '.join(map(str, dtypes))} (damaged or stale?)"
                )
            arrays.append(array)
        return cls(arrays[0], arrays[1], alphabet)


# --------------------------------------------------------------------------- helpers

_SA_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _code_dtype(symbols: int) -> np.dtype:
    """The narrowest big-endian unsigned dtype holding ``symbols`` codes."""
    if symbols <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(">u2") if symbols <= 1 << 16 else np.dtype(">u4")


def _suffix_array(codes: np.ndarray) -> np.ndarray:
    """Suffix array of ``codes`` (uint8 / >u2 / >u4) by libdivsufsort; int32 below 2**31."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    width = codes.dtype.itemsize
    data = np.ascontiguousarray(codes).view(np.uint8)
    if not data.flags.writeable:  # pydivsufsort refuses read-only buffers (e.g. a memmap)
        data = data.copy()
    order = divsufsort(data)
    if width > 1:  # suffixes of the big-endian bytes that start on a code boundary
        order = order[order % width == 0] // width
    return np.ascontiguousarray(order, dtype=np.int32 if n < 1 << 31 else np.int64)


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix of ``a`` and ``b`` in bytes (one big-integer XOR)."""
    k = min(len(a), len(b))
    diff = int.from_bytes(a[:k], "big") ^ int.from_bytes(b[:k], "big")
    return k if diff == 0 else k - 1 - (diff.bit_length() - 1) // 8


def _longest(lengths: list[int], where: list[int]) -> Span:
    if not lengths or max(lengths) == 0:
        return Span(0, 0, 0)
    best = max(lengths)
    i = lengths.index(best)
    return Span(best, i, where[i])


def _maximal(lengths: list[int], where: list[int], min_span: int) -> list[Span]:
    # Ends i + lengths[i] never decrease, so text[i:i+L] extends to the left exactly when the
    # match at i - 1 ends at the same place: report the positions whose end moves on.
    spans, previous_end = [], 0
    for i, length in enumerate(lengths):
        end = i + length
        if length >= min_span and (i == 0 or end > previous_end):
            spans.append(Span(length, i, where[i]))
        previous_end = end
    return spans


def _save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` written atomically (streams memmaps); CheckpointError when it cannot be."""
    atomic_write_with(path, lambda handle: np.save(handle, array, allow_pickle=False))
