"""Vocabularies: characters (default), words or BPE subwords, with encode/decode and an
unknown-symbol policy.

Character ids follow the code-point order of the distinct characters of the training text;
encoding is vectorised with NumPy (no per-character Python loop). Word tokens are the matches
of ``\\w+|[^\\w\\s]|\\s+`` (words, single punctuation marks, whitespace runs), so
``decode(encode(text)) == text``.

``max_vocab`` (word or char) keeps the ``max_vocab - 1`` most frequent tokens (ties: first
appearance first) plus ``<unk>`` at id 0, so ``<unk>`` counts towards ``max_vocab``; a
tokenizer built with ``max_vocab`` always has ``<unk>``, one built without never does.
Unknown symbols map to ``<unk>`` when there is one, else follow the ``unknown`` policy.
``<unk>`` decodes to U+FFFD (the replacement character), never to the literal ``<unk>``.

``bpe`` (optional, needs the ``tokenizers`` package) learns subword pieces with byte-pair
encoding over whole characters inside the word tokens above, so ``max_vocab`` is the target
vocabulary size (default 1024, ``<unk>`` at id 0 included) and every token is exact surface text.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from chargen.atomic import atomic_write_json, loads_bounded, read_regular
from chargen.errors import ConfigError, TokenizerError

FORMAT = "chargen-tokenizer"
VERSION = 1
UNK = "<unk>"
UNK_TEXT = "\ufffd"
WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\s+")
UNKNOWN_POLICIES = ("error", "drop", "warn")
KINDS = ("char", "word", "bpe")
CHUNK_CHARS = 1 << 20  # long texts are encoded in pieces so temporaries stay small
SHOWN_UNKNOWN = 10
EMPTY_TEXT = "cannot build a vocabulary from an empty text"
SMALL_DECODE = 256  # shorter id lists decode in plain Python (cheaper than a NumPy round trip)
_WORD_CUT = re.compile(r"\S\s")  # a place no word token spans: just before a whitespace run
BPE_DEFAULT_VOCAB = 1024
BPE_CACHE_WORDS = 1 << 18  # distinct words whose BPE ids are remembered between calls
NEEDS_TOKENIZERS = "the bpe tokenizer needs the tokenizers package: pip install 'chargen[bpe]'"


class UnknownSymbolsWarning(UserWarning):
    """Symbols of a text that the vocabulary lacks were dropped."""


class Tokenizer:
    """id <-> token mapping with a stated policy for symbols outside the vocabulary."""

    kind = "base"

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
        kind = data.get("kind")
        classes = {c.kind: c for c in (CharTokenizer, WordTokenizer, BPETokenizer)}
        if kind not in classes:
            raise TokenizerError(f"unknown tokenizer kind {kind!r} (expected char, word or bpe)")
        vocab, unk = data.get("vocab"), data.get("unk")
        if not isinstance(vocab, list):
            raise TokenizerError("tokenizer vocabulary must be a list of strings")
        return classes[kind]._from_parts(vocab, unk, data)

    @classmethod
    def _from_parts(cls, vocab: list[str], unk: Any, data: dict[str, Any]) -> Tokenizer:
        """The tokenizer of a checked ``vocab`` and ``unk``; a kind with more fields reads them
        from ``data``."""
        return cls(vocab, unk)

    def save(self, path: str | Path) -> None:
        """Write the JSON form atomically (UTF-8, non-ASCII symbols kept as they are)."""
        atomic_write_json(path, self.to_dict())


class CharTokenizer(Tokenizer):
    """One token per Unicode code point; encoding is vectorised with NumPy."""

    kind = "char"

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


class BPETokenizer(Tokenizer):
    """Byte-pair-encoding subwords over characters, trained and applied with ``tokenizers``.

    Text is first cut into the word tokens of ``WORD_PATTERN`` (words, single punctuation
    marks, whitespace runs); BPE then merges characters inside each of them. There is no
    normaliser, no byte-level alphabet and no subword prefix or suffix, so ``vocab[i]`` is
    exactly the text token ``i`` spells, ``"".join(vocab[i] for i in ids) == decode(ids)`` and
    ``decode(encode(text)) == text`` whenever the alphabet holds every character of ``text``.
    A character outside the alphabet encodes to ``<unk>`` (always id 0), one id per character.
    """

    kind = "bpe"

    def __init__(
        self,
        vocab: list[str],
        unk_id: int | None = 0,
        merges: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(vocab, unk_id)
        if unk_id is None:
            raise TokenizerError(f"a bpe vocabulary needs {UNK} and its id")
        self._unk: int = unk_id
        self.merges: list[tuple[str, str]] = [(a, b) for a, b in merges]
        for a, b in self.merges:
            if a + b == UNK or not (a in self.stoi and b in self.stoi and a + b in self.stoi):
                raise TokenizerError(f"bpe merge {a!r} + {b!r} does not fit the vocabulary")
        self._alphabet = frozenset(
            tok for i, tok in enumerate(self.vocab) if i != unk_id and len(tok) == 1
        )
        lib = _tokenizers()
        try:
            model = lib.models.BPE(
                vocab=dict(self.stoi), merges=list(self.merges), unk_token=UNK, fuse_unk=False
            )
        except Exception as exc:  # tokenizers raises plain Exception on a bad vocab/merges
            raise TokenizerError(f"not a usable bpe vocabulary ({_first_line(exc)})") from None
        self._model = lib.Tokenizer(model)  # no normaliser, no pre-tokenizer: a string is one word
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None) -> BPETokenizer:
        """Train on ``text``; equal to ``train`` on any stream of the same text cut safely."""
        return cls.train(_word_pieces(text), max_vocab)

    @classmethod
    def train(cls, pieces: Iterable[str], max_vocab: int | None = None) -> BPETokenizer:
        """Train on text ``pieces`` cut where no word token spans a cut (see ``_word_pieces``).

        ``max_vocab`` (default 1024) is the target size, ``<unk>`` included: merges stop there,
        or earlier when no pair is left. When the distinct characters alone do not fit, the
        ``max_vocab - 1`` most frequent are kept (ties: first appearance first) and nothing is
        merged. The result depends only on the text, never on where the pieces are cut.
        """
        size = BPE_DEFAULT_VOCAB if max_vocab is None else max_vocab
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ConfigError(
                f"--max-vocab must be an integer >= 2 (a token and <unk>), got {max_vocab!r}"
            )
        lib = _tokenizers()
        counts: Counter[str] = Counter()

        def batches() -> Iterator[list[str]]:
            for piece in pieces:
                counts.update(piece)
                words = WORD_PATTERN.findall(piece)
                yield words if _encodable(piece) else [w for w in words if _encodable(w)]

        model = lib.Tokenizer(lib.models.BPE(unk_token=UNK, fuse_unk=False))
        trainer = lib.trainers.BpeTrainer(
            vocab_size=size, min_frequency=0, show_progress=False, special_tokens=[UNK]
        )
        model.train_from_iterator(batches(), trainer)
        if not counts:
            raise TokenizerError(EMPTY_TEXT)
        trained = json.loads(model.to_str())["model"]
        ids: dict[str, int] = trained["vocab"]
        merges = trained["merges"]
        if any(not isinstance(m, list) for m in merges):  # before 0.20: "a b", ambiguous here
            raise ConfigError(
                "the bpe tokenizer needs tokenizers >= 0.20: pip install -U tokenizers"
            )
        vocab = sorted(ids, key=ids.__getitem__)
        if vocab[0] != UNK:
            raise TokenizerError(f"tokenizers did not put {UNK} at id 0")
        if len(vocab) > size:  # only when the alphabet alone overflows: then nothing was merged
            first = {ch: i for i, ch in enumerate(counts)}
            alphabet = sorted(vocab[1:], key=lambda ch: (-counts[ch], first[ch]))[: size - 1]
            vocab, merges = [UNK, *sorted(alphabet)], []
        return cls(vocab, 0, [(a, b) for a, b in merges])

    @classmethod
    def _from_parts(cls, vocab: list[str], unk: Any, data: dict[str, Any]) -> BPETokenizer:
        return cls(vocab, unk, _merge_list(data.get("merges")))

    def to_dict(self) -> dict[str, Any]:
        """The base form plus ``merges``: ``[left, right]`` pairs in the order they apply."""
        return {**super().to_dict(), "merges": [[a, b] for a, b in self.merges]}

    def split(self, text: str) -> list[str]:
        """The text each token covers, in order (an unknown character alone for ``<unk>``)."""
        out: list[str] = []
        at = 0
        for i in self._lookup(text).tolist():
            end = at + (1 if i == self._unk else len(self.vocab[i]))
            out.append(text[at:end])
            at = end
        return out

    def unknown_symbols(self, text: str) -> list[str]:
        """Distinct characters outside the alphabet, in order of first appearance."""
        return [ch for ch in dict.fromkeys(text) if ch not in self._alphabet]

    def _lookup(self, text: str) -> np.ndarray:
        """int64 ids of ``text`` (never -1: unknown characters are ``<unk>``), in 1M-char pieces."""
        parts = [self._encode_piece(piece) for piece in _word_pieces(text)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _encode_piece(self, piece: str) -> np.ndarray:
        """Each distinct word is encoded once by ``tokenizers``; NumPy lays the ids out in order."""
        words = WORD_PATTERN.findall(piece)
        index = {word: i for i, word in enumerate(dict.fromkeys(words))}
        seqs = self._word_ids(list(index))
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        flat = np.fromiter(chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
        which = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
        sizes = lengths[which]
        starts = (np.cumsum(lengths) - lengths)[which]
        # output slot k of word j reads flat[starts[j] + (k - first output slot of word j)]
        shift = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
        return flat[shift + np.arange(len(shift), dtype=np.int64)]

    def _word_ids(self, words: list[str]) -> list[list[int]]:
        """BPE ids of each distinct word: from the cache, or one ``encode_batch`` for new ones.

        Safe when threads share the tokenizer: a cache cleared meanwhile only costs a re-encode.
        """
        cache = self._cache
        known = {w: ids for w in words if (ids := cache.get(w)) is not None}
        new = [w for w in words if w not in known]
        if new:
            good = [w for w in new if _encodable(w)]  # a lone surrogate is a word of its own
            encoded = self._model.encode_batch(good, add_special_tokens=False)
            fresh = dict(zip(good, (e.ids for e in encoded), strict=True))
            fresh.update((w, [self._unk] * len(w)) for w in new if w not in fresh)
            if len(cache) + len(fresh) > BPE_CACHE_WORDS:
                cache.clear()
            cache.update(fresh)
            known.update(fresh)
        return [known[w] for w in words]


def _tokenizers() -> Any:
    """The ``tokenizers`` package, imported on first use; ConfigError (one line) when missing."""
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(NEEDS_TOKENIZERS) from None
    return tokenizers


def _encodable(text: str) -> bool:
    """True when ``text`` is valid UTF-8 material (no lone surrogates), as ``tokenizers`` needs."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _merge_list(merges: Any) -> list[tuple[str, str]]:
    """Merges read from JSON: a list of ``[left, right]`` string pairs, else TokenizerError."""
    if not isinstance(merges, list) or not all(
        isinstance(m, list) and len(m) == 2 and all(isinstance(t, str) and t for t in m)
        for m in merges
    ):
        raise TokenizerError("bpe merges must be a list of [left, right] pairs of strings")
    return [(a, b) for a, b in merges]


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


def build_tokenizer(kind: str, text: str, *, max_vocab: int | None = None) -> Tokenizer:
    """A new vocabulary of ``kind`` (``char`` | ``word`` | ``bpe``) from ``text``; see the module
    notes. ``bpe`` needs the ``tokenizers`` package (ConfigError naming it when missing)."""
    if kind == "char":
        return CharTokenizer.build(text, max_vocab)
    if kind == "word":
        return WordTokenizer.build(text, max_vocab)
    if kind == "bpe":
        return BPETokenizer.build(text, max_vocab)
    raise ConfigError(f"--tokenizer must be {' or '.join(KINDS)}, got {kind!r}")


MAX_TOKENIZER_BYTES = 1 << 30


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer JSON file; a one-line TokenizerError naming the file when it is
    missing, not a regular file, larger than ``MAX_TOKENIZER_BYTES``, unreadable, not JSON
    (or nested too deeply), or not a chargen tokenizer."""
    path = Path(path)
    if not os.path.lexists(path):
        raise TokenizerError(f"{path}: tokenizer file not found")
    raw = read_regular(path, TokenizerError, MAX_TOKENIZER_BYTES)
    try:
        data = loads_bounded(raw.decode("utf-8"))
    except ValueError as exc:
        raise TokenizerError(f"{path}: corrupt tokenizer file, not UTF-8 JSON ({exc})") from None
    try:
        return Tokenizer.from_dict(data)
    except TokenizerError as exc:
        raise TokenizerError(f"{path}: {exc}") from None
