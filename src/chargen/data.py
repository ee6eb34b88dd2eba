"""Token ids, the train/validation split, and the two batching schemes.

* ``StreamBatches`` (default): the split is cut into B contiguous streams; step i of an epoch
  reads ``seq_len`` tokens of every stream, the targets are the same positions shifted by one,
  and the recurrent state is carried from one step to the next (truncated BPTT). Every token is
  a target once per epoch.
* ``WindowBatches`` (the seed's scheme): windows of ``maxlen`` tokens every ``step`` tokens, one
  target (the token after the window) per window, windows shuffled every epoch.

Both are pure functions of (epoch, step), so a resumed run reads exactly what an uninterrupted
one would have read. ``load_ids`` reads the ids of any source (a prepared folder or text).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from chargen.config import DataConfig
from chargen.errors import ConfigError, TrainingError
from chargen.tokenizer import Tokenizer


def smallest_id_dtype(vocab_size: int) -> np.dtype:
    """uint8 / uint16 / int32: the narrowest type that holds every id of the vocabulary."""
    if vocab_size <= 2**8:
        return np.dtype(np.uint8)
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def split_ids(ids: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """First ``1 - val_fraction`` of the tokens for training, the rest for validation (views)."""
    cut = int(len(ids) * (1.0 - val_fraction))
    train, val = ids[:cut], ids[cut:]
    if len(val) < 2:
        raise TrainingError(
            f"the corpus is too short for a validation split: {len(ids)} tokens give "
            f"{len(val)} for validation (need at least 2); use a longer text"
        )
    return train, val


class StreamBatches:
    """B contiguous streams read ``seq_len`` tokens at a time; state carried between steps.

    Each epoch starts at a small offset in ``[0, seq_len)`` drawn from ``seed`` and the epoch
    number, so the truncation points move from epoch to epoch.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int = 0) -> None:
        self.ids = ids
        self.seq_len = seq_len
        self.seed = seed
        need = seq_len + 1
        if len(ids) < need + seq_len:
            raise TrainingError(
                f"the training split has {len(ids)} tokens, too few for one sequence of "
                f"{seq_len} (+1 target); use a longer text or a smaller --seq-len"
            )
        # never more streams than the text can fill with one full step each
        self.batch_size = max(1, min(batch_size, (len(ids) - seq_len) // need))
        self.stream_len = (len(ids) - seq_len) // self.batch_size
        self.steps_per_epoch = max(1, (self.stream_len - 1) // seq_len)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def offset(self, epoch: int) -> int:
        """Start offset of ``epoch`` (0 for the first epoch)."""
        if epoch == 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(0, self.seq_len))

    def batch(
        self, epoch: int, step: int, rows: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, seq_len) int64 for ``step`` of ``epoch`` (only ``rows`` if given)."""
        start = self.offset(epoch) + step * self.seq_len
        starts = np.arange(self.batch_size)[rows or slice(None)] * self.stream_len + start
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(self.ids[idx], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]


class WindowBatches:
    """The seed's scheme: windows of ``maxlen`` every ``step`` tokens, one target each."""

    def __init__(
        self, ids: np.ndarray, batch_size: int, maxlen: int, step: int, seed: int = 0
    ) -> None:
        if len(ids) <= maxlen:
            raise TrainingError(
                f"the training split has {len(ids)} tokens, too few for one window of "
                f"{maxlen} (+1 target); use a longer text or a smaller --maxlen"
            )
        self.ids = ids
        self.maxlen = maxlen
        self.seed = seed
        self.starts = np.arange(0, len(ids) - maxlen, step, dtype=np.int64)
        self.batch_size = min(batch_size, len(self.starts))
        self.steps_per_epoch = -(-len(self.starts) // self.batch_size)
        self._order_epoch = -1
        self._order = self.starts

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.starts)
            self._order_epoch = epoch
        return self._order

    def batch(
        self, epoch: int, step: int, rows: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, maxlen) and their next tokens (B,), shuffled per epoch (only ``rows`` if given)."""
        starts = self._epoch_order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        starts = starts[rows or slice(None)]
        idx = starts[:, None] + np.arange(self.maxlen + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(self.ids[idx], dtype=np.int64))
        return chunk[:, :-1], chunk[:, -1]


def eval_streams(
    ids: np.ndarray, max_tokens: int, min_stream: int = 2048, max_streams: int = 16
) -> np.ndarray:
    """Lay out up to ``max_tokens`` ids as (S, L) streams for a state-carrying evaluation.

    Few long streams lose little context at their starts; several streams keep the batch busy.
    """
    ids = ids[: max_tokens + 1]
    streams = int(max(1, min(max_streams, (len(ids) - 1) // min_stream)))
    length = len(ids) // streams
    return np.asarray(ids[: streams * length], dtype=np.int64).reshape(streams, length)


@dataclass(frozen=True)
class SourceIds:
    """A source's token ids, the tokenizer that made them, and the checksum a resume compares."""

    tokenizer: Tokenizer
    ids: np.ndarray
    sha256: str  # of the text as encoded; a prepared folder's own ``source_sha256``


def text_checksum(text: str) -> str:
    """SHA-256 of ``text`` in UTF-8 (lone surrogates kept): the corpus a run was trained on."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_ids(
    data: DataConfig,
    tokenizer: Tokenizer | None = None,
    *,
    unknown: str = "error",
    progress: bool = False,
) -> SourceIds:
    """The token ids of ``data.source``, from any source: a prepared folder (memory-mapped; it
    must have been prepared as ``data.lines`` says, with ``tokenizer``'s vocabulary), or text
    read by ``load_corpus`` with ``data``'s decoding rules, framed as a list when ``data.lines``,
    and encoded by ``tokenizer`` (``unknown`` as ``Tokenizer.encode``), or by a new one of kind
    ``data.tokenizer`` built from the text when None. One reader for training, resume, ``eval``,
    the API and the benchmarks."""
    # imported here: prepare.py imports this module for ``smallest_id_dtype``
    from chargen.corpus import load_corpus
    from chargen.lines import items_of, lines_text
    from chargen.prepare import is_prepared, open_prepared
    from chargen.tokenizer import build_tokenizer

    if is_prepared(data.source):
        prepared = open_prepared(data.source)
        framed = bool(prepared.meta.get("lines", False))
        if framed != data.lines:
            said, other = ("with", "without") if framed else ("without", "with")
            raise ConfigError(
                f"{data.source} was prepared {said} --lines and the run reads it {other} "
                "--lines; prepare it again the way the run trains"
            )
        if tokenizer is not None and tokenizer.to_dict() != prepared.tokenizer.to_dict():
            raise ConfigError(f"{data.source}: prepared with another vocabulary than the run's")
        return SourceIds(prepared.tokenizer, prepared.ids, prepared.meta["source_sha256"])
    corpus = load_corpus(
        data.source,
        encoding=data.encoding,
        errors=data.errors,
        lowercase=data.lowercase,
        data_dir=data.data_dir,
        progress=progress,
    )
    text = lines_text(items_of(corpus.text)) if data.lines else corpus.text
    if tokenizer is None:
        tokenizer = build_tokenizer(data.tokenizer, text, max_vocab=data.max_vocab)
    ids = tokenizer.encode(text, unknown=unknown)
    return SourceIds(
        tokenizer, ids.astype(smallest_id_dtype(tokenizer.vocab_size)), text_checksum(text)
    )
