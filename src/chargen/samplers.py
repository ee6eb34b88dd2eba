"""The samplers people use today, with llama.cpp's names and semantics: DRY, XTC, top-nσ,
mirostat v2 and dynamic temperature.

``rules(cfg)`` returns the rules ``cfg`` switches on; ``chain.SamplingChain`` merges them into
the documented order of stages (``sampling.py``):

* stage 1, on the raw logits: ``DRY`` (reads the history; ``dry.py``);
* stage 2: ``DynamicTemperature`` (after the fixed temperature, whose scaling it replaces);
* stage 3, on the tempered logits, in this order and after top-k, top-p, min-p and typical-p:
  ``TopNSigma``, ``XTC``, ``MirostatV2`` (mirostat cannot be combined with another
  truncation: ``check`` refuses it, as llama.cpp's mirostat ignores them).

At ``T = 0`` (greedy) only ``DRY`` applies: greedy is the argmax of the penalised logits, and
the ``T -> 0`` limit of every other rule keeps that argmax (a one-hot distribution has one
token above any XTC threshold, surprisal 0 and no spread).

Stateful rules (``XTC``: a step counter; ``MirostatV2``: ``mu``) keep one row per sample:
``reset(seeds)`` before the first token, ``observe(tokens, logprobs)`` after each draw,
``select(rows)`` when beam search keeps rows. Called without ``reset`` they start on the first
call with one row per logits row and seeds ``0..B-1``; a one-row state meets ``B`` rows by
being copied to each (beam search grows one prompt into ``B`` beams).

Beam search (which takes ``T = 1`` and uses only stages 1 and 3) applies DRY to each beam's
history and top-nσ as a constraint; dynamic temperature, like the temperature, does not
apply; XTC and mirostat follow the beams (seed 0) and act as deterministic cuts there.

``check(cfg)`` is the part of ``SamplingConfig.validate`` for these fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from chargen import numpy_rules

# DRY and its helpers live in dry.py; importable from here as before
from chargen.dry import DRY as DRY
from chargen.dry import FLOAT_MAX_LOG as FLOAT_MAX_LOG
from chargen.dry import MAX_BREAKER_TOKENS as MAX_BREAKER_TOKENS
from chargen.dry import MAX_DRY_PENALTY as MAX_DRY_PENALTY
from chargen.dry import _Breakers as _Breakers
from chargen.dry import _spell as _spell
from chargen.dry import _suffix_repeats as _suffix_repeats
from chargen.errors import SamplingError
from chargen.numpy_rules import LN2
from chargen.rng import uniforms
from chargen.sampling import (
    NEG_INF,
    TEMPERATURE,
    TRUNCATION,
    LogitsProcessor,
    Rule,
)
from chargen.sampling_config import (
    GREEDY_BELOW,
    SamplingConfig,
    _check_range,
    _is_int,
    _is_real,
)

MAX_BREAKERS = 64  # --dry-sequence-breakers: strings
MAX_BREAKER_CHARS = 40  # characters per breaker (llama.cpp truncates there; refused here)
MAX_DRY_ALLOWED = 65_536  # --dry-allowed-length
MAX_DRY_LAST_N = 2**31 - 1  # --dry-penalty-last-n
DRY_MULTIPLIER_RANGE = (0.0, 100.0)
DRY_BASE_RANGE = (1.0, 100.0)
MAX_SIGMAS = 100.0  # --top-n-sigma
MAX_TAU_BITS = 100.0  # --mirostat-tau
MAX_DYNATEMP = 100.0  # --dynatemp-range and --dynatemp-exponent
XTC_STREAM = 0x5854_435F_5354_524D  # "XTC_STRM": XTC's uniforms come from seed ^ this
_MASK = (1 << 64) - 1


# --------------------------------------------------------------------------- validation
def _check_open(flag: str, value: Any, high: float) -> None:
    """``value`` in ``(0, high]``."""
    if not _is_real(value) or not math.isfinite(value) or not 0 < value <= high:
        raise SamplingError(f"{flag} must be a number in (0, {high:g}], got {value!r}")


def _check_breakers(value: Any) -> tuple[str, ...]:
    flag = "--dry-sequence-breakers"
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise SamplingError(f"{flag} must be a list of strings, got {value!r}")
    if not all(isinstance(s, str) for s in value):
        raise SamplingError(f"{flag} must be a list of strings, got {value!r}")
    if len(value) > MAX_BREAKERS:
        raise SamplingError(f"{flag} takes at most {MAX_BREAKERS} strings, got {len(value)}")
    long = [s for s in value if len(s) > MAX_BREAKER_CHARS]
    if long:
        raise SamplingError(
            f"{flag}: each breaker is at most {MAX_BREAKER_CHARS} characters, got {long[0]!r}"
        )
    return tuple(value)


def check(cfg: SamplingConfig) -> None:
    """Raise SamplingError (one line naming the CLI flag) on a value of this module out of range.

    Also refuses mirostat with another truncation, and stores ``dry_sequence_breakers`` as a
    tuple (a JSON list becomes one, so a configuration stays hashable).
    """
    _check_range("--dry-multiplier", cfg.dry_multiplier, *DRY_MULTIPLIER_RANGE)
    _check_range("--dry-base", cfg.dry_base, *DRY_BASE_RANGE)
    allowed = cfg.dry_allowed_length
    if not _is_int(allowed) or not 1 <= allowed <= MAX_DRY_ALLOWED:
        raise SamplingError(
            f"--dry-allowed-length must be an integer in [1, {MAX_DRY_ALLOWED}], got {allowed!r}"
        )
    last_n = cfg.dry_penalty_last_n
    if not _is_int(last_n) or not -1 <= last_n <= MAX_DRY_LAST_N:
        raise SamplingError(
            "--dry-penalty-last-n must be -1 (the whole history) or an integer in "
            f"[0, {MAX_DRY_LAST_N}], got {last_n!r}"
        )
    cfg.dry_sequence_breakers = _check_breakers(cfg.dry_sequence_breakers)
    _check_range("--xtc-probability", cfg.xtc_probability, 0.0, 1.0)
    _check_range("--xtc-threshold", cfg.xtc_threshold, 0.0, 1.0)
    if cfg.top_n_sigma is not None:
        _check_open("--top-n-sigma", cfg.top_n_sigma, MAX_SIGMAS)
    if cfg.mirostat_tau is not None:
        _check_open("--mirostat-tau", cfg.mirostat_tau, MAX_TAU_BITS)
    _check_open("--mirostat-eta", cfg.mirostat_eta, 1.0)
    _check_range("--dynatemp-range", cfg.dynatemp_range, 0.0, MAX_DYNATEMP)
    _check_open("--dynatemp-exponent", cfg.dynatemp_exponent, MAX_DYNATEMP)
    if cfg.mirostat_tau is not None:
        others = [
            flag
            for flag, on in (
                ("--top-k", cfg.top_k is not None),
                ("--top-p", cfg.top_p is not None and cfg.top_p < 1.0),
                ("--min-p", cfg.min_p is not None and cfg.min_p > 0.0),
                ("--typical-p", cfg.typical_p is not None and cfg.typical_p < 1.0),
                ("--top-n-sigma", cfg.top_n_sigma is not None),
                ("--xtc-probability", cfg.xtc_probability > 0.0),
            )
            if on
        ]
        if others:
            raise SamplingError(
                f"--mirostat-tau replaces truncation: drop {', '.join(others)} "
                "(mirostat alone decides which tokens stay)"
            )


# --------------------------------------------------------------------------- the rules
def rules(cfg: SamplingConfig, vocab: Sequence[str] | None = None) -> list[LogitsProcessor]:
    """The rules of this module that ``cfg`` (validated) switches on, in the documented order.

    Off: ``dry_multiplier = 0`` or ``dry_penalty_last_n = 0``; ``dynatemp_range = 0``;
    ``top_n_sigma`` / ``mirostat_tau`` ``None``; ``xtc_probability = 0`` or
    ``xtc_threshold > 0.5`` (no two tokens can both reach it). With ``T = 0`` only DRY.
    ``vocab`` (each token's text) gives DRY its sequence breakers (``DRY.use_vocabulary``).
    """
    out: list[LogitsProcessor] = []
    if cfg.dry_multiplier > 0.0 and cfg.dry_penalty_last_n != 0:
        dry = DRY(
            cfg.dry_multiplier,
            cfg.dry_base,
            cfg.dry_allowed_length,
            cfg.dry_penalty_last_n,
            tuple(cfg.dry_sequence_breakers),
        )
        if vocab is not None:
            dry.use_vocabulary(vocab)
        out.append(dry)
    if cfg.greedy:
        return out
    if cfg.dynatemp_range > 0.0:
        out.append(DynamicTemperature(cfg.temperature, cfg.dynatemp_range, cfg.dynatemp_exponent))
    if cfg.top_n_sigma is not None:
        out.append(TopNSigma(cfg.top_n_sigma))
    if cfg.xtc_probability > 0.0 and cfg.xtc_threshold <= 0.5:
        out.append(XTC(cfg.xtc_probability, cfg.xtc_threshold))
    if cfg.mirostat_tau is not None:
        out.append(MirostatV2(cfg.mirostat_tau, cfg.mirostat_eta))
    return out


# --------------------------------------------------------------------------- dynamic temperature
@dataclass
class DynamicTemperature(Rule):
    """Entropy-driven temperature (kalomaze's DynaTemp), as llama.cpp's ``temp_ext``.

    With ``l`` the logits before any temperature, ``N`` the tokens still live (``l > -inf``),
    ``p = softmax(l)`` and ``H = -sum p ln p``::

        T_lo = max(0, T - range),  T_hi = T + range
        T_dyn = T_lo + (T_hi - T_lo) * (H / ln N) ** exponent      (H / ln N clipped to [0, 1])
        out = (l - max l) / T_dyn

    so a confident step (low entropy) is sampled cooler and an uncertain one hotter, around
    the ``--temperature`` ``T``. ``T_dyn < 1e-12`` keeps only the argmax (first on ties);
    a row with one live token is left as it is. The rule runs after ``sampling.Temperature``
    (which divides by ``T`` when ``T != 1``), so it first multiplies by ``T``: the result is
    the formula above whatever ``T`` is.
    """

    stage: ClassVar[int] = TEMPERATURE
    has_numpy: ClassVar[bool] = True

    temperature: float
    delta: float
    exponent: float = 1.0

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.dynamic_temperature(logits, self.temperature, self.delta, self.exponent)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        x = logits.double()
        if self.temperature != 1.0:  # undo sampling.Temperature: back to the untempered logits
            x = x * self.temperature
        live = x > NEG_INF
        count = live.sum(dim=-1)
        x = x - x.max(dim=-1, keepdim=True).values
        logp = torch.log_softmax(x, dim=-1)
        ent = -(logp.exp() * torch.where(live, logp, torch.zeros_like(logp))).sum(dim=-1)
        max_ent = torch.log(count.clamp(min=2).double())
        norm = (ent / max_ent).clamp(0.0, 1.0)
        low = max(0.0, self.temperature - self.delta)
        high = self.temperature + self.delta
        t_dyn = low + (high - low) * norm**self.exponent
        cold = t_dyn < GREEDY_BELOW
        out = x / torch.where(cold, torch.ones_like(t_dyn), t_dyn)[:, None]
        if bool(cold.any()):
            best = torch.zeros_like(live).scatter_(1, x.argmax(dim=-1, keepdim=True), True)
            out = torch.where(cold[:, None] & ~best, torch.full_like(out, NEG_INF), out)
        out = torch.where((count <= 1)[:, None], logits.double(), out)
        return out.to(logits.dtype)


# --------------------------------------------------------------------------- top-n-sigma
@dataclass
class TopNSigma(Rule):
    """Top-nσ (Tang et al. 2024), as llama.cpp: keeps ``l >= max l - n * σ``.

    ``σ`` is the population standard deviation (divide by the count) of the live logits
    (``> -inf``) of the row, the mean over those too. On tempered logits ``(l - max) / T``
    both sides scale by ``1 / T``, so the kept set does not depend on the temperature. The
    argmax is always kept; a row with one live token is left as it is.
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    n: float

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.top_n_sigma(logits, self.n)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        x = logits.double()
        live = x > NEG_INF
        count = live.sum(dim=-1, keepdim=True).clamp(min=1)
        zero = torch.zeros_like(x)
        mean = torch.where(live, x, zero).sum(dim=-1, keepdim=True) / count
        var = torch.where(live, (x - mean) ** 2, zero).sum(dim=-1, keepdim=True) / count
        cut = x.max(dim=-1, keepdim=True).values - self.n * var.sqrt()
        return logits.masked_fill(x < cut, NEG_INF)


# --------------------------------------------------------------------------- stateful rules
class _Rows:
    """The per-row state of a stateful rule: each row's seed and named (B, ...) tensors."""

    def __init__(self, seeds: Sequence[int] = ()) -> None:
        self.seeds = [int(s) for s in seeds]
        self.tensors: dict[str, torch.Tensor] = {}

    def take(self, rows: torch.Tensor) -> None:
        index = rows.detach().to(device="cpu", dtype=torch.long)
        self.seeds = [self.seeds[i] for i in index.tolist()]
        self.tensors = {k: v[index] for k, v in self.tensors.items()}


class _Stateful(Rule):
    """``reset`` / ``select`` and the lazy start shared by the stateful rules."""

    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._rows = _Rows()

    def _start(self, seeds: Sequence[int]) -> _Rows:
        raise NotImplementedError

    def reset(self, seeds: Sequence[int]) -> None:
        """Fresh state, one row per seed (before the first token)."""
        self._rows = self._start(seeds)

    def select(self, rows: torch.Tensor) -> None:
        """Beam search kept ``rows`` (indices, repeats allowed): the state follows them."""
        if self._rows.seeds:
            self._rows.take(rows)

    def _state(self, rows: int) -> _Rows:
        """The state for ``rows`` rows: started lazily (seeds 0..rows-1), or copied from one."""
        have = len(self._rows.seeds)
        if have == 0:
            self._rows = self._start(range(rows))
        elif have != rows:
            if have != 1:
                raise ValueError(
                    f"{type(self).__name__} keeps state for {have} rows, got {rows}; "
                    "call reset or select first"
                )
            self._rows.take(torch.zeros(rows, dtype=torch.long))
        return self._rows


@dataclass
class XTC(_Stateful):
    """Exclude Top Choices (p-e-w, 2024), as llama.cpp: with probability ``probability`` per
    row and step, every token with ``p >= threshold`` except the least likely of them is
    removed.

    ``p`` is the softmax of the (tempered, truncated) logits in float64; tokens are ranked by
    logit, most likely first (ties: lower id first); when at least two tokens reach the
    threshold, the ones ranked before the last of them get ``-inf``. The row's draw happens when
    ``u <= probability`` with ``u = rng.uniforms([seed ^ XTC_STREAM], step)``: a stream of its
    own per seed (so the token draws are untouched), ``step`` counted by ``observe``. A
    threshold above 0.5 never removes anything (``rules`` leaves the rule out).
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    probability: float
    threshold: float = 0.1

    def _start(self, seeds: Sequence[int]) -> _Rows:
        rows = _Rows(seeds)
        rows.tensors["step"] = torch.zeros(len(rows.seeds), dtype=torch.long)
        return rows

    def uniforms(self, rows: int) -> torch.Tensor:
        """(B,) float64: each row's uniform for its current step."""
        state = self._state(rows)
        words = np.array([(s ^ XTC_STREAM) & _MASK for s in state.seeds], dtype=np.uint64)
        steps = state.tensors["step"]
        out = torch.empty(rows, dtype=torch.float64)
        for step in torch.unique(steps).tolist():
            at = (steps == step).nonzero()[:, 0]
            out[at] = uniforms(words[at.numpy()], int(step))
        return out

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        fire = self.uniforms(logits.shape[0]).numpy() <= self.probability
        return numpy_rules.xtc(logits, fire, self.threshold)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        fire = (self.uniforms(logits.shape[0]) <= self.probability).to(logits.device)
        if not bool(fire.any()):
            return logits
        x = logits.double()
        probs = torch.softmax(x, dim=-1)
        # ranked by logit (exact; p is monotone in it, so the tokens above form a prefix)
        order = torch.sort(x, dim=-1, descending=True, stable=True).indices
        above = (probs.gather(1, order) >= self.threshold).sum(dim=-1, keepdim=True)
        ranks = torch.arange(logits.shape[-1], device=logits.device)
        drop_ranked = (ranks < above - 1) & fire[:, None]
        drop = torch.zeros_like(drop_ranked).scatter_(1, order, drop_ranked)
        return logits.masked_fill(drop, NEG_INF)

    def observe(self, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        """One more step for every row."""
        self._state(tokens.shape[0]).tensors["step"] += 1


@dataclass
class MirostatV2(_Stateful):
    """Mirostat 2.0 (Basu et al. 2021), as llama.cpp: a target surprisal ``tau`` in bits.

    Each row keeps ``mu`` (bits), ``2 * tau`` at the start. A step keeps the tokens whose
    surprisal ``-log2 p`` (``p``: softmax of the tempered logits) is at most ``mu`` — the
    argmax of the logits (first on ties) if none is — and the draw is from them renormalised. After the draw (``observe``),
    with ``s = -log2 p'(x)`` the surprisal of the drawn token under that renormalised
    distribution, ``mu <- mu - eta * (s - tau)``, so the mean of ``s`` settles at ``tau``
    (where ``tau`` is reachable: mirostat only cuts, so ``tau`` must be below the plain
    sampling's surprisal). A token is a character in a character model, so ``tau`` is then
    bits per character, the unit of a run's validation bits/char; with word or BPE
    tokenizers it is bits per token.
    """

    stage: ClassVar[int] = TRUNCATION
    has_numpy: ClassVar[bool] = True

    tau: float
    eta: float = 0.1

    def _start(self, seeds: Sequence[int]) -> _Rows:
        rows = _Rows(seeds)
        rows.tensors["mu"] = torch.full((len(rows.seeds),), 2.0 * self.tau, dtype=torch.float64)
        return rows

    def mu(self, rows: int) -> torch.Tensor:
        """(B,) float64 bits: each row's current ``mu``."""
        return self._state(rows).tensors["mu"]

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        return numpy_rules.mirostat(logits, self.mu(logits.shape[0]).numpy())

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mu = self.mu(logits.shape[0]).to(logits.device)
        logp = torch.log_softmax(logits.double(), dim=-1)
        keep = -logp / LN2 <= mu[:, None]
        none = ~keep.any(dim=-1, keepdim=True)
        best = torch.zeros_like(keep).scatter_(1, logits.argmax(dim=-1, keepdim=True), True)
        return logits.masked_fill(~(keep | (none & best)), NEG_INF)

    def observe(self, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        """``mu -= eta * (surprisal of the drawn token in bits - tau)`` per row."""
        state = self._state(tokens.shape[0])
        picked = logprobs.detach().double().gather(1, tokens[:, None].to(logprobs.device))[:, 0]
        surprisal = (-picked / LN2).cpu()
        state.tensors["mu"] = state.tensors["mu"] - self.eta * (surprisal - self.tau)
