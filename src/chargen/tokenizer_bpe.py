"""The optional BPE tokenizer: subword pieces learnt with byte-pair encoding over whole
characters inside the word tokens of ``WORD_PATTERN``, trained and applied with the
``tokenizers`` package (imported on first use; ConfigError naming it when missing).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

import numpy as np

from chargen.errors import ConfigError, TokenizerError
from chargen.tokenizer_base import EMPTY_TEXT, UNK, Tokenizer
from chargen.tokenizer_plain import WORD_PATTERN, _word_pieces, cut_at_words

BPE_DEFAULT_VOCAB = 1024
BPE_CACHE_WORDS = 1 << 18  # distinct words whose BPE ids are remembered between calls
NEEDS_TOKENIZERS = "the bpe tokenizer needs the tokenizers package: pip install 'chargen[bpe]'"


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
    frames_lines = False  # a newline may merge into a piece: no boundary token of its own

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
    def from_chunks(cls, chunks: Iterable[str], max_vocab: int | None = None) -> BPETokenizer:
        """``build`` of the text ``chunks`` join to, streamed (cut by ``pieces``)."""
        return cls.train(cut_at_words(chunks), max_vocab)

    @classmethod
    def pieces(cls, chunks: Iterable[str]) -> Iterator[str]:
        """Chunks re-cut where no word token spans a cut (``cut_at_words``)."""
        return cut_at_words(chunks)

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
