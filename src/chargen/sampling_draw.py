"""The distribution sampled from and the draw: what follows the rules of ``sampling.py``.

``apply_processors`` runs built rules over the logits; ``process_logits`` / ``logprobs_after``
turn the result into the log-probabilities actually sampled from (a one-hot at ``T = 0``);
``select_next`` draws from them by inverse CDF with one explicit uniform per row (see
``rng.py``); ``draw`` does all of it for one token after ``check_finite_logits`` has refused
unusable model scores; ``entropy`` is that distribution's. ``reweight_distribution`` is the
seed program's temperature formula on probabilities. Every name here is importable from
``sampling`` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from chargen.errors import SamplingError
from chargen.numpy_draw import non_finite_error
from chargen.numpy_rules import NEG_INF
from chargen.sampling_config import GREEDY_BELOW, SamplingConfig, _check_temperature

if TYPE_CHECKING:
    from chargen.sampling import LogitsProcessor

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


# --------------------------------------------------------------------------- the seed's formula
def reweight_distribution(original_distribution: ArrayT, temperature: float = 0.5) -> ArrayT:
    """The seed's ``p' = exp(log p / T) / sum(exp(log p / T))``, computed safely.

    Computed as ``w = exp(log p / T - max(log p / T))`` over the entries with ``p > 0`` only, then
    ``p' = w / sum(w)``: no ``log(0)`` and no overflow; zeros stay exactly zero. ``T = 1`` returns
    ``p / sum(p)``. ``T = 0`` (any ``T < 1e-12``) returns a one-hot on the argmax (ties: first
    index). For ``T > 0`` exact ties share the mass, which is the formula's value (and its limit
    as ``T -> 0``). Works on 1-D inputs and batches (along the last axis); returns the input's
    type (a torch tensor keeps its dtype and device; a NumPy array keeps a floating dtype, other
    inputs give float64).

    Raises SamplingError for ``T < 0``, NaN or infinite ``T``, negative or non-finite
    probabilities, an empty input, or a row of zeros.
    """
    _check_temperature(temperature)
    if isinstance(original_distribution, torch.Tensor):
        source = original_distribution.detach()
        out = reweight_distribution(source.cpu().double().numpy(), temperature)
        dtype = source.dtype if source.dtype.is_floating_point else torch.float64
        return torch.from_numpy(out).to(device=source.device, dtype=dtype)
    p = np.asarray(original_distribution, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise SamplingError("a probability distribution needs at least one entry")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise SamplingError("a probability distribution must be finite and non-negative")
    positive = p > 0
    if not np.all(positive.any(axis=-1)):
        raise SamplingError("a probability distribution must not be all zeros")
    if temperature < GREEDY_BELOW:
        out = np.zeros_like(p)
        np.put_along_axis(out, np.argmax(p, axis=-1)[..., None], 1.0, axis=-1)
    elif temperature == 1:
        scaled = p / p.max(axis=-1, keepdims=True)  # max first: the sum cannot overflow
        out = scaled / scaled.sum(axis=-1, keepdims=True)
    else:
        logp = np.log(p, out=np.full_like(p, -np.inf), where=positive) / temperature
        logp -= logp.max(axis=-1, keepdims=True)
        with np.errstate(under="ignore"):  # weights far below the max rounding to 0 is intended
            weights = np.exp(logp, out=np.zeros_like(p), where=positive)
        out = weights / weights.sum(axis=-1, keepdims=True)
    if isinstance(original_distribution, np.ndarray) and original_distribution.dtype.kind == "f":
        return out.astype(original_distribution.dtype, copy=False)
    return out


# --------------------------------------------------------------------------- the distribution
def _zero_where_neg_inf(logp: torch.Tensor) -> torch.Tensor:
    return torch.where(logp == NEG_INF, torch.zeros_like(logp), logp)


def apply_processors(
    processors: list[LogitsProcessor], logits: torch.Tensor, history: torch.Tensor
) -> torch.Tensor:
    """``logits`` passed through each processor in turn."""
    for processor in processors:
        logits = processor(logits, history)
    return logits


def _check_shapes(logits: torch.Tensor, history: torch.Tensor) -> None:
    if logits.dim() != 2 or history.dim() != 2 or history.shape[0] != logits.shape[0]:
        raise ValueError(
            f"expected logits (B, V) and history (B, T), got {tuple(logits.shape)} "
            f"and {tuple(history.shape)}"
        )


def process_logits(
    logits: torch.Tensor, history: torch.Tensor, cfg: SamplingConfig
) -> torch.Tensor:
    """Log-probabilities (B, V) of the distribution actually sampled from.

    ``log_softmax`` of the logits after ``build_processors(cfg)``; for ``T = 0`` a one-hot in
    log space (0 at the argmax of the penalised logits, first index on ties; ``-inf`` elsewhere).
    """
    from chargen.chain import SamplingChain  # the chain holds every rule, new ones included

    return SamplingChain(cfg).logprobs(logits, history)


def logprobs_after(
    rules: list[LogitsProcessor], greedy: bool, logits: torch.Tensor, history: torch.Tensor
) -> torch.Tensor:
    """``process_logits`` for rules already built (``SamplingChain`` builds them once)."""
    _check_shapes(logits, history)
    logits = apply_processors(rules, logits, history)
    if greedy:
        one_hot = torch.full_like(logits, NEG_INF)
        return one_hot.scatter_(1, logits.argmax(dim=-1, keepdim=True), 0.0)
    return torch.log_softmax(logits, dim=-1)


# --------------------------------------------------------------------------- drawing
def select_next(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw (B,) int64: per row, the first index whose cumulative probability exceeds ``u``.

    With ``c_i = sum_{j <= i} exp(logprobs_j)`` in float64, the result is the first ``i`` with
    ``c_i > u * c_{V-1}`` (``u`` is scaled by the row's total so that rounding in the
    normalisation cannot bias the draw; ``u < 0`` counts as 0). A zero-probability token is
    never returned: its ``c_i`` equals ``c_{i-1}``, so it is never the *first* to exceed, and a
    ``u`` at or past the rounded total lands on the last token with non-zero probability.
    """
    probs = logprobs.detach().double().exp()
    if probs.dim() != 2 or not bool((probs > 0).any(dim=-1).all()):
        raise ValueError("select_next needs (B, V) log-probabilities with a live token per row")
    cdf = torch.cumsum(probs, dim=-1)
    u = uniforms.to(device=cdf.device, dtype=torch.float64).reshape(-1, 1).clamp(min=0.0)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]
    positions = torch.arange(probs.shape[-1], device=probs.device)
    last_live = torch.where(probs > 0, positions, -1).amax(dim=-1)
    return torch.minimum(idx, last_live)


def usable_rows(logits: torch.Tensor) -> torch.Tensor:
    """(B,) bool: rows with no NaN, no ``+inf`` and at least one logit above ``-inf``.

    ``-inf`` is a token the model rules out, which the chain handles; NaN or ``+inf`` would
    turn the whole distribution into NaN.
    """
    bad = torch.isnan(logits) | torch.isposinf(logits)
    return ~bad.any(dim=-1) & (logits > NEG_INF).any(dim=-1)


def check_finite_logits(logits: torch.Tensor, step: int) -> None:
    """Raise GenerationError unless every row of the raw model logits is usable.

    Checked on the model's own scores, before any rule (see ``usable_rows``): a NaN there
    would otherwise reach the draw as an empty distribution.
    """
    if not bool(usable_rows(logits).all()):
        raise non_finite_error(step)


def draw(
    logits: torch.Tensor,
    history: torch.Tensor,
    uniforms: torch.Tensor,
    cfg: SamplingConfig,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One token per row through the whole chain: (ids (B,), log p of each (B,), entropy (B,)).

    ``check_finite_logits``, ``process_logits`` then ``select_next``; log p and the entropy are
    of the distribution actually sampled from. ``step`` (the token's index) only names it in
    an error.
    """
    check_finite_logits(logits, step)
    logprobs = process_logits(logits, history, cfg)
    picked = select_next(logprobs, uniforms)
    return picked, logprobs.gather(1, picked[:, None])[:, 0], entropy(logprobs)


def entropy(logprobs: torch.Tensor) -> torch.Tensor:
    """``H = -sum p log p`` in nats per row (B,), with ``0 * log 0 = 0``."""
    return -(logprobs.exp() * _zero_where_neg_inf(logprobs)).sum(dim=-1)
