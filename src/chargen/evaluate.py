"""Validation loss: mean negative log-likelihood per token and per character, in nats and bits.

``bits_per_char = nats_per_char / ln 2``. Per-character figures divide the total loss by the
characters the target tokens spell, so character, word and subword models compare fairly.
``EvalSet`` is the one entry point: a run's validation split (or all of a text), scored the way
the run trains (``evaluate_items`` / ``evaluate_windows`` / ``evaluate_streams``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chargen.config import RunConfig, TrainConfig
from chargen.data import eval_streams, load_ids, split_ids
from chargen.errors import ConfigError
from chargen.lines import BOUNDARY, IGNORE, item_bounds, padded_examples, split_items
from chargen.models import LanguageModel
from chargen.tokenizer import UNK, Tokenizer

LN2 = math.log(2.0)


@dataclass(frozen=True)
class EvalResult:
    """Loss over ``tokens`` targets that spell ``chars`` characters."""

    nats_per_token: float
    nats_per_char: float
    bits_per_char: float
    tokens: int
    chars: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@contextlib.contextmanager
def _evaluating(model: LanguageModel) -> Iterator[None]:
    """``model`` in eval mode (dropout off) inside; its own mode again after, also on error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def token_char_lengths(vocab: list[str]) -> np.ndarray:
    """Characters spelled by each token id; ``<unk>`` (decoded as U+FFFD) and any empty token count 1."""
    return np.array([1 if tok == UNK else max(1, len(tok)) for tok in vocab], dtype=np.int64)


def _result(total_nats: float, tokens: int, chars: int) -> EvalResult:
    per_char = total_nats / max(chars, 1)
    return EvalResult(total_nats / max(tokens, 1), per_char, per_char / LN2, tokens, chars)


@torch.inference_mode()
def evaluate_streams(
    model: LanguageModel,
    ids: np.ndarray,
    char_lengths: np.ndarray,
    *,
    max_tokens: int = 1_000_000,
    seq_len: int = 256,
) -> EvalResult:
    """State-carrying loss over up to ``max_tokens`` of ``ids`` (every position a target)."""
    with _evaluating(model):
        device = model.head.weight.device
        streams = torch.from_numpy(eval_streams(ids, max_tokens)).to(device)
        state = model.initial_state(streams.shape[0], device)
        total = 0.0
        chars = 0
        targets_seen = 0
        for start in range(0, streams.shape[1] - 1, seq_len):
            x = streams[:, start : start + seq_len]
            y = streams[:, start + 1 : start + seq_len + 1]
            x = x[:, : y.shape[1]]
            logits, state = model(x, state)
            total += float(
                F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum"
                )
            )
            targets_seen += y.numel()
            chars += int(char_lengths[y.cpu().numpy()].sum())
    return _result(total, targets_seen, chars)


@torch.inference_mode()
def evaluate_windows(
    model: LanguageModel,
    ids: np.ndarray,
    char_lengths: np.ndarray,
    *,
    maxlen: int,
    step: int,
    max_tokens: int = 1_000_000,
    batch_size: int = 512,
) -> EvalResult:
    """The seed's loss: each window of ``maxlen`` tokens predicts the token after it."""
    with _evaluating(model):
        device = model.head.weight.device
        ids = np.asarray(ids[: max_tokens + maxlen], dtype=np.int64)
        starts = np.arange(0, len(ids) - maxlen, step)
        total = 0.0
        chars = 0
        for b in range(0, len(starts), batch_size):
            idx = starts[b : b + batch_size, None] + np.arange(maxlen + 1)[None, :]
            chunk = torch.from_numpy(ids[idx]).to(device)
            logits, _ = model(chunk[:, :-1])
            total += float(F.cross_entropy(logits[:, -1].float(), chunk[:, -1], reduction="sum"))
            chars += int(char_lengths[ids[idx[:, -1]]].sum())
    return _result(total, len(starts), chars)


@torch.inference_mode()
def evaluate_items(
    model: LanguageModel,
    ids: np.ndarray,
    bounds: np.ndarray,
    items: np.ndarray,
    char_lengths: np.ndarray,
    *,
    max_tokens: int = 1_000_000,
    batch_size: int = 256,
) -> EvalResult:
    """Loss over whole items, each from a fresh state; every item's end counts as a character."""
    with _evaluating(model):
        device = model.head.weight.device
        pad = int(ids[bounds[0]])
        total, tokens, chars = 0.0, 0, 0
        for b in range(0, len(items), batch_size):
            if tokens >= max_tokens:
                break
            x, y = padded_examples(ids, bounds, items[b : b + batch_size], pad)
            logits, _ = model(x.to(device), None)
            flat = logits.reshape(-1, logits.shape[-1]).float()
            total += float(
                F.cross_entropy(
                    flat, y.reshape(-1).to(device), ignore_index=IGNORE, reduction="sum"
                )
            )
            real = y[y != IGNORE].numpy()
            tokens += len(real)
            chars += int(char_lengths[real].sum())
    return _result(total, tokens, chars)


@dataclass(frozen=True)
class EvalSet:
    """What a run is scored on, and how: the one evaluation entry point of training, ``eval``,
    the API and the benchmarks. ``scheme`` follows the run: whole items from a fresh state
    (``--lines``), the seed's windows, or state-carrying streams; ``part`` is the run's
    validation split (the tail of the tokens, or a fixed random share of the items) or all."""

    ids: np.ndarray
    char_lengths: np.ndarray
    scheme: str  # "items" | "windows" | "streams"
    scored: str  # what is scored, for people: "validation split (last 10% of the tokens)"
    maxlen: int = 0  # windows: each window's length and the step between windows
    step: int = 1
    bounds: np.ndarray | None = None  # items: the boundary positions, and the items scored
    items: np.ndarray | None = None

    @classmethod
    def of_run(
        cls,
        ids: np.ndarray,
        vocab: list[str],
        train: TrainConfig,
        lines: bool,
        part: str = "validation",
        name: str = "the text",
    ) -> EvalSet:
        """The ``part`` (``validation`` | ``all``) of a run's ``ids`` (the whole encoded source),
        as the run with ``train`` settings and ``lines`` framing is scored; ``name``: the source,
        in errors."""
        if part not in ("validation", "all"):
            raise ConfigError(f"part must be validation or all, got {part!r}")
        lengths = token_char_lengths(vocab)
        if lines:
            bounds = item_bounds(ids, vocab.index(BOUNDARY))
            count = len(bounds) - 1
            _, val_items = split_items(count, train.val_fraction)
            chosen = np.arange(count) if part == "all" else val_items
            scored = "every item" if part == "all" else f"the {len(val_items):,} validation items"
            return cls(ids, lengths, "items", scored, bounds=bounds, items=chosen)
        scored = "the whole text"
        if part == "validation":
            _, ids = split_ids(ids, train.val_fraction)
            scored = f"validation split (last {train.val_fraction * 100:g}% of the tokens)"
        if len(ids) < 2:
            raise ConfigError(f"{name}: too little text to evaluate ({len(ids)} tokens)")
        if train.batching == "windows":
            return cls(ids, lengths, "windows", scored, train.maxlen, train.window_step)
        return cls(ids, lengths, "streams", scored)

    def evaluate(self, model: LanguageModel, max_tokens: int | None = None) -> EvalResult:
        """The loss of ``model`` on this set, over at most ``max_tokens`` targets (all if None)."""
        limit = len(self.ids) if max_tokens is None else max_tokens
        if self.scheme == "items":
            assert self.bounds is not None and self.items is not None
            return evaluate_items(
                model, self.ids, self.bounds, self.items, self.char_lengths, max_tokens=limit
            )
        if self.scheme == "windows":
            return evaluate_windows(
                model,
                self.ids,
                self.char_lengths,
                maxlen=self.maxlen,
                step=self.step,
                max_tokens=limit,
            )
        return evaluate_streams(model, self.ids, self.char_lengths, max_tokens=limit)


@dataclass(frozen=True)
class RunEvaluation:
    """A run's loss on a source: the figures, what was scored, and of which source."""

    result: EvalResult
    source: str
    part: str  # "validation" | "all"
    scored: str  # "validation split (last 10% of the tokens) of corpus.txt"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the figures of ``EvalResult`` and what they are of."""
        return {
            **self.result.to_dict(),
            "source": self.source,
            "split": self.part,
            "scored": self.scored,
        }


def evaluate_run(
    model: LanguageModel,
    tokenizer: Tokenizer,
    config: RunConfig,
    source: str | None = None,
    *,
    part: str = "validation",
    encoding: str | None = None,
    errors: str | None = None,
    lowercase: bool | None = None,
    data_dir: str | None = None,
    unknown: str = "warn",
) -> RunEvaluation:
    """The loss of a run's ``model`` on ``source`` (default: the run's own), read as the run
    reads its text (``data.load_ids``) and scored as it trains (``EvalSet``). Decoding follows
    the run unless told: its ``errors`` and lower-casing; its ``encoding`` only for its own
    source (another text's is detected). ``data_dir``: where a named corpus is cached."""
    own = config.data
    data = dataclasses.replace(
        own,
        source=source or own.source,
        encoding=encoding if encoding is not None else (own.encoding if source is None else None),
        errors=errors or own.errors,
        lowercase=own.lowercase if lowercase is None else lowercase,
        data_dir=data_dir or own.data_dir,
    )
    ids = load_ids(data, tokenizer, unknown=unknown).ids
    chosen = EvalSet.of_run(ids, tokenizer.vocab, config.train, own.lines, part, data.source)
    result = chosen.evaluate(model)
    return RunEvaluation(result, data.source, part, f"{chosen.scored} of {data.source}")


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the token frequencies: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
