"""How the next token is chosen: small logits processors composed in one fixed order.

Order (each a callable ``(logits (B, V), history (B, T)) -> logits``):

1. penalties on the raw logits: repetition (CTRL: ``l / r`` if ``l > 0`` else ``l * r``),
   frequency (``l - f * count``) and presence (``l - p * [count > 0]``) over the last
   ``penalty_window`` tokens, then no-repeat-n-gram bans. They describe the model's evidence,
   so they act before the distribution is reshaped.
2. temperature: ``l / T`` (``T = 0`` is greedy, handled by ``process_logits``).
3. truncation on the tempered distribution: top-k, top-p, min-p, typical-p. Each keeps at
   least the most likely token.

Removed tokens get ``-inf``. ``process_logits`` returns the log-probabilities actually sampled
from; ``select_next`` draws by inverse CDF from per-row uniforms (see ``rng.py``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from chargen.errors import SamplingError

NEG_INF = float("-inf")
GREEDY_BELOW = 1e-12  # a temperature below this is greedy (it would underflow float32)


def reweight_distribution(original_distribution: Any, temperature: float = 0.5) -> Any:
    """The seed's ``p' = exp(log p / T) / sum(exp(log p / T))``, without ``log(0)`` warnings.

    Zeros stay zero, ``T = 1`` returns ``p`` normalised, ``T -> 0`` (and ``T = 0``) a one-hot
    on the first argmax. Works on NumPy arrays and torch tensors, 1-D or batched (last axis).
    """
    _check_temperature(temperature)
    if isinstance(original_distribution, torch.Tensor):
        out = reweight_distribution(
            original_distribution.detach().cpu().double().numpy(), temperature
        )
        return torch.from_numpy(out).to(original_distribution.dtype)
    p = np.asarray(original_distribution, dtype=np.float64)
    if p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise SamplingError("a probability distribution must be finite and non-negative")
    total = p.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise SamplingError("a probability distribution must not be all zeros")
    if temperature < GREEDY_BELOW:
        one_hot = np.zeros_like(p)
        np.put_along_axis(one_hot, np.argmax(p, axis=-1)[..., None], 1.0, axis=-1)
        return one_hot
    positive = p > 0
    logp = np.where(positive, np.log(np.where(positive, p, 1.0)), -np.inf) / temperature
    logp = logp - logp.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):  # tiny weights rounding to 0 are the intended result
        weights = np.where(positive, np.exp(np.where(positive, logp, 0.0)), 0.0)
    return weights / weights.sum(axis=-1, keepdims=True)


def _check_temperature(temperature: float) -> None:
    if (
        not isinstance(temperature, (int, float))
        or math.isnan(temperature)
        or temperature < 0
        or math.isinf(temperature)
    ):
        raise SamplingError(f"--temperature must be a finite number >= 0, got {temperature!r}")


@dataclass
class SamplingConfig:
    """Every knob of the sampling chain; names match the CLI flags and the HTTP API."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_window: int = 64
    no_repeat_ngram_size: int = 0

    def validate(self) -> SamplingConfig:
        """Raise SamplingError (one line naming the flag) on a value out of range; return self."""
        _check_temperature(self.temperature)
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise SamplingError(f"--top-k must be an integer >= 1, got {self.top_k!r}")
        _check_unit("--top-p", self.top_p, low_open=True)
        _check_unit("--min-p", self.min_p, low_open=False)
        _check_unit("--typical-p", self.typical_p, low_open=True)
        if not _finite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise SamplingError(
                f"--repetition-penalty must be > 0, got {self.repetition_penalty!r}"
            )
        for flag, value in (
            ("--frequency-penalty", self.frequency_penalty),
            ("--presence-penalty", self.presence_penalty),
        ):
            if not _finite(value):
                raise SamplingError(f"{flag} must be a finite number, got {value!r}")
        if (
            isinstance(self.penalty_window, bool)
            or not isinstance(self.penalty_window, int)
            or self.penalty_window < 1
        ):
            raise SamplingError(
                f"--penalty-window must be an integer >= 1, got {self.penalty_window!r}"
            )
        n = self.no_repeat_ngram_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SamplingError(f"--no-repeat-ngram-size must be an integer >= 0, got {n!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SamplingError(f"unknown sampling option(s): {', '.join(unknown)}")
        return cls(**data).validate()


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_unit(flag: str, value: float | None, *, low_open: bool) -> None:
    if value is None:
        return
    ok = _finite(value) and (value > 0 if low_open else value >= 0) and value <= 1
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise SamplingError(f"{flag} must be in {interval}, got {value!r}")


class LogitsProcessor(Protocol):
    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor: ...


def _window_counts(history: torch.Tensor, vocab: int, window: int) -> torch.Tensor:
    """(B, V) counts of each token among the last ``window`` tokens of each row."""
    recent = history[:, -window:]
    counts = torch.zeros((history.shape[0], vocab), dtype=torch.float32, device=history.device)
    if recent.numel():
        counts.scatter_add_(1, recent, torch.ones_like(recent, dtype=torch.float32))
    return counts


@dataclass
class RepetitionPenalty:
    """CTRL penalty for tokens in the window: ``l / r`` where ``l > 0``, else ``l * r``."""

    penalty: float
    window: int = 64

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        seen = _window_counts(history, logits.shape[-1], self.window) > 0
        penalised = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return torch.where(seen, penalised, logits)


@dataclass
class FrequencyPenalty:
    """``l - f * count(token in window)``."""

    penalty: float
    window: int = 64

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return logits - self.penalty * _window_counts(history, logits.shape[-1], self.window)


@dataclass
class PresencePenalty:
    """``l - p * [token in window]``."""

    penalty: float
    window: int = 64

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        seen = (_window_counts(history, logits.shape[-1], self.window) > 0).float()
        return logits - self.penalty * seen


@dataclass
class NoRepeatNGram:
    """Bans every token that would complete an n-gram already present in the row's history."""

    n: int

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if history.shape[1] < self.n or self.n < 1:
            return logits
        out = logits.clone()
        rows = history.tolist()
        for b, row in enumerate(rows):
            prefix = tuple(row[len(row) - self.n + 1 :]) if self.n > 1 else ()
            banned = {
                row[i + self.n - 1]
                for i in range(len(row) - self.n + 1)
                if tuple(row[i : i + self.n - 1]) == prefix
            }
            if banned:
                out[b, list(banned)] = NEG_INF
        return _keep_one(out, logits)


@dataclass
class Temperature:
    """``(l - max l) / T`` for ``T > 0`` (the shift leaves softmax unchanged and avoids inf - inf).

    Below 1 it sharpens the distribution, above 1 it flattens it.
    """

    temperature: float

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return (logits - logits.max(dim=-1, keepdim=True).values) / self.temperature


@dataclass
class TopK:
    """Keeps the ``k`` largest logits; among equal values the lower token id wins (exactly k kept)."""

    k: int

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        k = min(self.k, logits.shape[-1])
        # stable descending sort: ties keep id order, so exactly k survive
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :k]
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, order, True)
        return logits.masked_fill(~keep, NEG_INF)


@dataclass
class TopP:
    """Nucleus: the smallest set of most likely tokens whose probability mass reaches ``p``."""

    p: float

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.double(), dim=-1)
        sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the tokens ranked above
        keep_sorted = before < self.p - 1e-12
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)
        return logits.masked_fill(~keep, NEG_INF)


@dataclass
class MinP:
    """Keeps tokens with ``p >= min_p * max p``."""

    min_p: float

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.double(), dim=-1)
        threshold = self.min_p * probs.max(dim=-1, keepdim=True).values
        return logits.masked_fill(probs < threshold, NEG_INF)


@dataclass
class TypicalP:
    """Locally typical sampling: tokens ranked by ``|-log p - H|``, kept until their mass reaches ``p``."""

    p: float

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.double(), dim=-1)
        probs = logp.exp()
        ent = -(probs * torch.nan_to_num(logp, neginf=0.0)).sum(dim=-1, keepdim=True)
        shift = (-logp - ent).abs()
        order = torch.sort(shift, dim=-1, stable=True).indices
        sorted_p = probs.gather(1, order)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p
        keep_sorted = before < self.p - 1e-12
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)
        return _keep_one(logits.masked_fill(~keep, NEG_INF), logits)


def _keep_one(processed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Where a row lost every token, restore its argmax so something can still be drawn."""
    empty = (
        torch.isinf(processed).all(dim=-1)
        if processed.numel()
        else torch.zeros(0, dtype=torch.bool)
    )
    if empty.any():
        best = original.argmax(dim=-1)
        rows = empty.nonzero()[:, 0]
        processed[rows, best[rows]] = original[rows, best[rows]]
    return processed


def build_processors(cfg: SamplingConfig) -> list[LogitsProcessor]:
    """The active processors of ``cfg`` in the documented order."""
    chain: list[LogitsProcessor] = []
    if cfg.repetition_penalty != 1.0:
        chain.append(RepetitionPenalty(cfg.repetition_penalty, cfg.penalty_window))
    if cfg.frequency_penalty:
        chain.append(FrequencyPenalty(cfg.frequency_penalty, cfg.penalty_window))
    if cfg.presence_penalty:
        chain.append(PresencePenalty(cfg.presence_penalty, cfg.penalty_window))
    if cfg.no_repeat_ngram_size:
        chain.append(NoRepeatNGram(cfg.no_repeat_ngram_size))
    if cfg.temperature >= GREEDY_BELOW and cfg.temperature != 1.0:
        chain.append(Temperature(cfg.temperature))
    if cfg.top_k is not None:
        chain.append(TopK(cfg.top_k))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        chain.append(TopP(cfg.top_p))
    if cfg.min_p:
        chain.append(MinP(cfg.min_p))
    if cfg.typical_p is not None and cfg.typical_p < 1.0:
        chain.append(TypicalP(cfg.typical_p))
    return chain


def process_logits(
    logits: torch.Tensor, history: torch.Tensor, cfg: SamplingConfig
) -> torch.Tensor:
    """Log-probabilities (B, V) of the distribution actually sampled from.

    ``T = 0`` (any ``T < 1e-12``) is greedy: 0 at the argmax of the processed logits, ``-inf``
    elsewhere.
    """
    for processor in build_processors(cfg):
        logits = processor(logits, history)
    if cfg.temperature < GREEDY_BELOW:
        greedy = torch.full_like(logits, NEG_INF)
        greedy.scatter_(1, logits.argmax(dim=-1, keepdim=True), 0.0)
        return greedy
    return torch.log_softmax(logits, dim=-1)


def select_next(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: per row, the first index whose cumulative probability exceeds ``u``.

    Never returns a zero-probability token: a ``u`` past the rounded total lands on the last
    token with non-zero probability.
    """
    probs = logprobs.double().exp()
    cdf = torch.cumsum(probs, dim=-1)
    u = uniforms.to(cdf.device, torch.float64)[:, None] * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True)[:, 0]
    nonzero = probs > 0
    last = nonzero.shape[-1] - 1 - torch.flip(nonzero, dims=[-1]).int().argmax(dim=-1)
    idx = torch.minimum(idx, last)
    # a zero-probability token can only be hit through a flat cdf segment: move to the next live one
    bad = ~nonzero.gather(1, idx[:, None])[:, 0]
    if bad.any():
        for row in bad.nonzero()[:, 0].tolist():
            live = nonzero[row].nonzero()[:, 0]
            after = live[live >= idx[row]]
            idx[row] = after[0] if len(after) else live[-1]
    return idx


def entropy(logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats per row, with ``0 * log 0 = 0``."""
    probs = logprobs.exp()
    return -(probs * torch.nan_to_num(logprobs, neginf=0.0)).sum(dim=-1)
