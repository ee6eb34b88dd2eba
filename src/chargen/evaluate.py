"""Validation loss: mean negative log-likelihood per token and per character, in nats and bits.

``bits_per_char = nats_per_char / ln 2``. Per-character figures divide the total loss by the
characters the target tokens spell, so character, word and subword models compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from chargen.data import eval_streams
from chargen.models import LanguageModel
from chargen.tokenizer import UNK

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
    was_training = model.training
    model.eval()
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
    model.train(was_training)
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
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    return _result(total, len(starts), chars)


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the token frequencies: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
