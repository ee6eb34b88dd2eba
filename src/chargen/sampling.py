"""How the next token is chosen: small logits processors composed in one fixed order.

Each rule is a callable ``(logits (B, V) float, history (B, T) int64) -> logits (B, V)`` with
one job; a removed token gets ``-inf``. ``build_processors(cfg)`` returns the active rules, in
this order:

1. **Penalties and bans on the raw logits**: ``RepetitionPenalty`` (CTRL), ``FrequencyPenalty``,
   ``PresencePenalty`` (all over the last ``penalty_window`` tokens of the history), then
   ``NoRepeatNGram`` (over the whole history). They correct the model's *evidence* for a token
   because of what was already written, so they act before the distribution is reshaped: a
   repetition penalty of 1.3 then means the same thing at every temperature, and a banned token
   is gone before any truncation counts probability mass.
2. **Temperature** ``l / T``: reshapes the corrected distribution.
3. **Truncation** on the tempered distribution, most coarse first: ``TopK``, ``TopP``,
   ``MinP``, ``TypicalP``. They act after the temperature (as in Hugging Face's warpers) so
   that a nucleus of ``p = 0.9`` is 90 % of the mass actually sampled from. Each truncation
   keeps at least one token; top-k, top-p and min-p always keep the argmax (typical-p keeps
   the most *typical* token, see ``TypicalP``).

The rules of ``samplers.py`` (llama.cpp's samplers, same names) join these stages: **DRY**
is a penalty (stage 1, after the n-gram ban; it reads the history); **dynamic temperature**
is the temperature stage (``T_dyn`` in ``[max(0, T - range), T + range]`` by the normalised
entropy ``** exponent``, in place of ``l / T``); **top-nσ**, **XTC** and **mirostat v2** are
truncations (stage 3, after typical-p, in that order); mirostat replaces the other
truncations (combining them is an error). At ``T = 0`` DRY still applies and the others are
skipped, as the truncations are.

``T = 0`` (any ``T < GREEDY_BELOW``) is greedy and no processor divides by it: the chain is
stage 1 only, and ``process_logits`` returns a one-hot on the argmax of the penalised logits.
Truncation is skipped because top-k, top-p and min-p always keep the argmax anyway, and the
``T -> 0`` limit of typical-p keeps it too (a one-hot distribution has entropy 0 and its mode
has surprisal 0), so greedy equals the limit of sampling as ``T -> 0`` for every setting.

``process_logits`` returns the log-probabilities actually sampled from; ``select_next`` draws
from them by inverse CDF with one explicit uniform per row (see ``rng.py``), so a batch of
samples equals the same samples drawn one at a time (both in ``sampling_draw.py``, with the
rest of the draw; importable from here).

Every rule also has a ``numpy`` method: the same rule on NumPy arrays (``numpy_rules.py``),
with which the NumPy engine runs a whole chain; both give the same logits for the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from chargen import numpy_rules
from chargen.numpy_rules import MASS_TOLERANCE

# SamplingConfig lives in sampling_config.py (no torch: the command line reads it fast)
from chargen.sampling_config import SamplingConfig

# the distribution and the draw live in sampling_draw.py; importable from here as before
from chargen.sampling_draw import ArrayT as ArrayT
from chargen.sampling_draw import _zero_where_neg_inf
from chargen.sampling_draw import apply_processors as apply_processors
from chargen.sampling_draw import check_finite_logits as check_finite_logits
from chargen.sampling_draw import draw as draw
from chargen.sampling_draw import entropy as entropy
from chargen.sampling_draw import logprobs_after as logprobs_after
from chargen.sampling_draw import process_logits as process_logits
from chargen.sampling_draw import reweight_distribution as reweight_distribution
from chargen.sampling_draw import select_next as select_next
from chargen.sampling_draw import usable_rows as usable_rows

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- processors
PENALTY, TEMPERATURE, TRUNCATION = 1, 2, 3
"""The stages of the documented order (see the module notes)."""


class LogitsProcessor(Protocol):
    """``(logits (B, V) float, history (B, T) int64) -> logits (B, V)``; removed tokens ``-inf``.

    A rule says what it needs as class attributes, so that a chain can answer for all of its
    rules (``chain.py``): ``stage`` (``PENALTY``, ``TEMPERATURE`` or ``TRUNCATION``),
    ``reads_history`` (it looks at the tokens before), ``stateful`` (it keeps state from one
    step to the next) and ``has_numpy`` (it has a method ``numpy(logits, history)``, the same
    rule on NumPy arrays, with which the NumPy engine draws without torch; see
    ``numpy_rules``).
    """

    stage: ClassVar[int]
    reads_history: ClassVar[bool]
    stateful: ClassVar[bool]
    has_numpy: ClassVar[bool]
    ends_rows: ClassVar[bool]

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor: ...

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        """The same rule on NumPy arrays; only called where ``has_numpy``."""
        ...


class Rule:
    """Base of the rules: each declares its ``stage`` and only what differs from these
    defaults (reads no history, keeps no state, no NumPy version, ends no row; ``ends_rows``:
    it can say a row is finished, see ``chain.SamplingChain.done``)."""

    stage: ClassVar[int]
    reads_history: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    has_numpy: ClassVar[bool] = False
    ends_rows: ClassVar[bool] = False

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        """The rule on NumPy arrays, where ``has_numpy``: what ``__call__`` gives, as arrays."""
        raise NotImplementedError(f"{type(self).__name__} has no NumPy version")


def _window_counts(history: torch.Tensor, logits: torch.Tensor, window: int) -> torch.Tensor:
    """(B, V) counts, in the logits' dtype, of each token among each row's last ``window`` tokens."""
    recent = history[:, -window:].to(device=logits.device, dtype=torch.long)
    counts = torch.zeros_like(logits)
    if recent.numel():
        counts.scatter_add_(1, recent, torch.ones_like(recent, dtype=logits.dtype))
    return counts


@dataclass
class RepetitionPenalty(Rule):
    """CTRL (Keskar et al. 2019) for tokens in the window: ``l / r`` if ``l > 0`` else ``l * r``.

    ``r > 1`` makes a recent token less likely whatever the sign of its logit.
    """

    stage: ClassVar[int] = PENALTY
    has_numpy: ClassVar[bool] = True
    reads_history: ClassVar[bool] = True

    penalty: float
    window: int = 64

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.repetition_penalty(logits, history, self.penalty, self.window)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        seen = _window_counts(history, logits, self.window) > 0
        penalised = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return torch.where(seen, penalised, logits)


@dataclass
class FrequencyPenalty(Rule):
    """``l - f * count(token in window)`` (OpenAI's frequency penalty)."""

    stage: ClassVar[int] = PENALTY
    has_numpy: ClassVar[bool] = True
    reads_history: ClassVar[bool] = True

    penalty: float
    window: int = 64

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.frequency_penalty(logits, history, self.penalty, self.window)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return logits - self.penalty * _window_counts(history, logits, self.window)


@dataclass
class PresencePenalty(Rule):
    """``l - p * [count(token in window) > 0]`` (OpenAI's presence penalty)."""

    stage: ClassVar[int] = PENALTY
    has_numpy: ClassVar[bool] = True
    reads_history: ClassVar[bool] = True

    penalty: float
    window: int = 64

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.presence_penalty(logits, history, self.penalty, self.window)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        seen = (_window_counts(history, logits, self.window) > 0).to(logits.dtype)
        return logits - self.penalty * seen


@dataclass
class NoRepeatNGram(Rule):
    """Bans (``-inf``) every token ``x`` such that ``history[-(n-1):] + [x]`` already occurs in the row.

    The whole history counts (prompt included). ``n = 1`` bans every token seen. If every token
    of a row would be banned, that row keeps its argmax so something can still be chosen.
    """

    stage: ClassVar[int] = PENALTY
    has_numpy: ClassVar[bool] = True
    reads_history: ClassVar[bool] = True

    n: int

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.no_repeat_ngram(logits, history, self.n)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        n, length = self.n, history.shape[1]
        if n < 1 or length < n:
            return logits
        hist = history.to(device=logits.device, dtype=torch.long)
        grams = hist.unfold(1, n, 1)  # (B, length - n + 1, n): every n-gram of each row
        if n > 1:
            prefix = hist[:, length - n + 1 :]  # (B, n - 1): what the next token would extend
            match = (grams[:, :, :-1] == prefix[:, None, :]).all(dim=-1)
        else:
            match = torch.ones(grams.shape[:2], dtype=torch.bool, device=logits.device)
        hits = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
        hits.scatter_add_(1, grams[:, :, -1], match.long())
        return _keep_one(logits.masked_fill(hits > 0, NEG_INF), logits)


@dataclass
class Temperature(Rule):
    """``(l - max l) / T`` for ``T > 0``: ``softmax`` of it is ``softmax(l / T)``.

    The shift changes no probability and keeps ``l / T`` finite for tiny ``T``. ``T < 1``
    sharpens the distribution, ``T > 1`` flattens it.
    """

    stage: ClassVar[int] = TEMPERATURE
    has_numpy: ClassVar[bool] = True

    temperature: float

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.temperature(logits, self.temperature)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return (logits - logits.max(dim=-1, keepdim=True).values) / self.temperature


@dataclass
class TopK(Rule):
    """Keeps the ``k`` largest logits (all of them if ``k >= V``), ``-inf`` elsewhere.

    Ties: exactly ``k`` tokens are kept; among equal logits the lower token id wins (a stable
    descending sort), so the result never depends on the sort kernel.
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    k: int

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.top_k(logits, self.k)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        k = min(self.k, logits.shape[-1])
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :k]
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, order, True)
        return logits.masked_fill(~keep, NEG_INF)


def _keep_prefix_reaching(probs: torch.Tensor, order: torch.Tensor, mass: float) -> torch.Tensor:
    """Mask of the shortest prefix of ``order`` (per row) whose probability reaches ``mass``.

    Token ``order[j]`` is kept iff the mass ranked before it is ``< mass - MASS_TOLERANCE``;
    the first token is always kept.
    """
    ranked = probs.gather(1, order)
    cumulative = torch.cumsum(ranked, dim=-1)
    before = torch.cat([torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], dim=-1)
    keep_ranked = before < mass - MASS_TOLERANCE
    keep_ranked[:, 0] = True
    return torch.zeros_like(keep_ranked).scatter_(1, order, keep_ranked)


@dataclass
class TopP(Rule):
    """Nucleus (Holtzman et al. 2020): the smallest set of most likely tokens with mass ``>= p``.

    Tokens are ranked by probability (ties: lower id first) and kept until their cumulative
    probability (float64) reaches ``p - 1e-12`` (the tolerance absorbs rounding in the sum).
    The most likely token is always kept; ``p = 1`` keeps everything.
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    p: float

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.top_p(logits, self.p)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.p >= 1.0:
            return logits
        probs = torch.softmax(logits.double(), dim=-1)
        order = torch.sort(probs, dim=-1, descending=True, stable=True).indices
        return logits.masked_fill(~_keep_prefix_reaching(probs, order, self.p), NEG_INF)


@dataclass
class MinP(Rule):
    """Keeps the tokens with ``p >= min_p * max p`` (probabilities in float64).

    The argmax always passes; ``min_p = 0`` keeps everything, ``min_p = 1`` the argmax and its
    exact ties.
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    min_p: float

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.min_p(logits, self.min_p)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.double(), dim=-1)
        threshold = self.min_p * probs.max(dim=-1, keepdim=True).values
        return logits.masked_fill(probs < threshold, NEG_INF)


@dataclass
class TypicalP(Rule):
    """Locally typical sampling (Meister et al. 2023), as in Hugging Face's ``TypicalLogitsWarper``.

    With ``H = -sum p log p``, tokens are ranked by ``|-log p - H|`` (closest to the entropy
    first; ties: lower id first) and kept until their cumulative probability reaches ``p``
    (``>= p - 1e-12``). The most typical token is always kept; it need not be the argmax
    (that is the method: in a flat distribution the mode can be atypical). ``p = 1`` keeps all.
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    p: float

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.typical_p(logits, self.p)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.p >= 1.0:
            return logits
        logp = torch.log_softmax(logits.double(), dim=-1)
        probs = logp.exp()
        ent = -(probs * _zero_where_neg_inf(logp)).sum(dim=-1, keepdim=True)
        shift = (-logp - ent).abs()  # +inf for removed tokens: ranked last
        order = torch.sort(shift, dim=-1, stable=True).indices
        return logits.masked_fill(~_keep_prefix_reaching(probs, order, self.p), NEG_INF)


def _keep_one(processed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Where a row lost every token, restore its argmax in ``original`` so one can be chosen."""
    empty = (processed == NEG_INF).all(dim=-1, keepdim=True)
    if not bool(empty.any()):
        return processed
    best = torch.zeros_like(processed, dtype=torch.bool)
    best.scatter_(1, original.argmax(dim=-1, keepdim=True), True)
    return torch.where(best & empty, original, processed)


def build_processors(cfg: SamplingConfig) -> list[LogitsProcessor]:
    """The active processors of ``cfg`` (validated) in the module's order.

    Inactive settings add nothing: ``repetition_penalty = 1``, zero penalties,
    ``no_repeat_ngram_size = 0``, ``T = 1``, ``top_k = None``, ``top_p`` / ``typical_p`` ``None``
    or 1, ``min_p`` ``None`` or 0. With ``T = 0`` (greedy) only stage 1 is returned.
    """
    cfg.validate()
    chain: list[LogitsProcessor] = []
    window = cfg.penalty_window
    if cfg.repetition_penalty != 1.0:
        chain.append(RepetitionPenalty(cfg.repetition_penalty, window))
    if cfg.frequency_penalty != 0.0:
        chain.append(FrequencyPenalty(cfg.frequency_penalty, window))
    if cfg.presence_penalty != 0.0:
        chain.append(PresencePenalty(cfg.presence_penalty, window))
    if cfg.no_repeat_ngram_size > 0:
        chain.append(NoRepeatNGram(cfg.no_repeat_ngram_size))
    if cfg.greedy:
        return chain
    if cfg.temperature != 1.0:
        chain.append(Temperature(cfg.temperature))
    if cfg.top_k is not None:
        chain.append(TopK(cfg.top_k))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        chain.append(TopP(cfg.top_p))
    if cfg.min_p is not None and cfg.min_p > 0.0:
        chain.append(MinP(cfg.min_p))
    if cfg.typical_p is not None and cfg.typical_p < 1.0:
        chain.append(TypicalP(cfg.typical_p))
    return chain
