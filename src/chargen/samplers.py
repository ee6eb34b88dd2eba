"""The samplers people use today, with llama.cpp's names and semantics: DRY, XTC, top-nσ,
mirostat v2 and dynamic temperature.

``rules(cfg)`` returns the rules ``cfg`` switches on; ``chain.SamplingChain`` merges them into
the documented order of stages (``sampling.py``):

* stage 1, on the raw logits: ``DRY`` (reads the history);
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
from chargen.errors import SamplingError
from chargen.numpy_rules import LN2
from chargen.rng import uniforms
from chargen.sampling import (
    NEG_INF,
    PENALTY,
    TEMPERATURE,
    TRUNCATION,
    ArrayT,
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
MAX_BREAKER_TOKENS = 20  # tokens of a breaker's tail after its head token (llama.cpp's cap)
MAX_DRY_ALLOWED = 65_536  # --dry-allowed-length
MAX_DRY_LAST_N = 2**31 - 1  # --dry-penalty-last-n
DRY_MULTIPLIER_RANGE = (0.0, 100.0)
DRY_BASE_RANGE = (1.0, 100.0)
FLOAT_MAX_LOG = 88.7228391  # ln(float32 max): llama.cpp's bound on DRY's exponent
MAX_DRY_PENALTY = 1e30  # a DRY penalty never exceeds this, so a penalised logit stays finite
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


# --------------------------------------------------------------------------- DRY
@dataclass
class DRY(Rule):
    """DRY, "don't repeat yourself" (p-e-w, 2024), as llama.cpp computes it.

    Over the window ``w`` = the last ``penalty_last_n`` tokens of the history (``-1``: all of
    it, prompt included; ``n = len(w)``):

    1. ``limit``: the tokens after the most recent sequence breaker in ``w`` (``n`` if none);
       a breaker occurrence is a head token then its tail tokens (see ``use_vocabulary``), and
       among breakers with the same head position the longest counts.
    2. For every earlier position ``j < n - 1``,
       ``L(j) = min(limit, max{k : w[j-k+1 .. j] == w[n-k .. n-1]})``: how far the text ending
       at ``j`` repeats the text ending now (overlaps allowed).
    3. Token ``x`` would extend the repeats of the positions ``j`` followed by it
       (``w[j+1] = x``); with ``L(x) = max L(j)`` over those ``j`` and ``a`` the allowed
       length, a token with ``L(x) >= a`` that is not a single-token breaker gets
       ``l_x - multiplier * base ** min(L(x) - a, E)``, ``E = floor(88.7228391 / ln base)``
       (llama.cpp's overflow guard; no cap when ``base <= 1.000001``), the penalty at most
       ``MAX_DRY_PENALTY``.

    Nothing happens when ``n <= a``. Lengths are counted in tokens (characters for a
    character model). Sequence breakers are text: they act once the rule knows each token's
    text (``use_vocabulary``); until then the rule has none.

    Both versions take step 1 from ``_Breakers.limits``, which reads only the last ``a + E``
    tokens (and a breaker's tail) when the exponent is capped; step 2 is a pass over every
    position per token of repeat in torch, and only over the positions still matching in
    NumPy (``numpy_rules.dry_repeats``).
    """

    stage: ClassVar[int] = PENALTY
    reads_history: ClassVar[bool] = True
    has_numpy: ClassVar[bool] = True
    needs_vocabulary: ClassVar[bool] = True

    multiplier: float
    base: float = 1.75
    allowed_length: int = 2
    penalty_last_n: int = -1
    breakers: tuple[str, ...] = ("\n", ":", '"', "*")

    def __post_init__(self) -> None:
        self._breaks = _Breakers()
        exponent = int(FLOAT_MAX_LOG / math.log(self.base)) if self.base > 1.000001 else 0
        self._max_exponent = exponent  # 0: no cap

    def use_vocabulary(self, pieces: Sequence[str]) -> None:
        """Resolve the breakers against the token texts (``pieces[i]`` is token ``i``'s text).

        As llama.cpp's ``get_overlapping_token_sequences``: a token whose text contains a
        breaker is a single-token breaker (never penalised); a token whose text ends with a
        proper prefix of a breaker is the head of a sequence whose tail is the rest of the
        breaker, split into tokens by greedy longest match over ``pieces`` (the exact split
        for a character vocabulary) and cut to ``MAX_BREAKER_TOKENS``; a tail that cannot be
        spelt is dropped. Empty breakers are ignored.
        """
        self._breaks = _Breakers.resolve([b for b in self.breakers if b], list(pieces))

    def _window(self, history: ArrayT) -> ArrayT | None:
        """The window ``w`` (B, n), or None when the rule does nothing (``n <= a``)."""
        length = history.shape[1]
        n = length if self.penalty_last_n < 0 else min(length, self.penalty_last_n)
        if self.multiplier == 0.0 or n <= self.allowed_length:
            return None
        return history[:, length - n :]

    def _limits(self, w: np.ndarray | torch.Tensor) -> np.ndarray:
        """Step 1, each row's ``limit`` (B,), at most ``a + E`` when the exponent is capped:
        longer repeats get the same penalty."""
        capped = self._max_exponent > 0
        return self._breaks.limits(w, self.allowed_length + self._max_exponent if capped else 0)

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        w = self._window(history)
        if w is None:
            return logits
        penalty = (self.multiplier, self.base, self._max_exponent, MAX_DRY_PENALTY)
        limits, single = self._limits(w), self._breaks.single_set
        return numpy_rules.dry(logits, w, limits, self.allowed_length, single, penalty)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        w = self._window(history)
        if w is None:
            return logits
        w = w.to(device=logits.device, dtype=torch.long)
        allowed = self.allowed_length
        repeat = _suffix_repeats(w, torch.from_numpy(self._limits(w)))  # (B, n - 1): L(j)
        values = torch.where(repeat >= allowed, repeat, torch.full_like(repeat, -1))
        longest = torch.full(logits.shape, -1, dtype=torch.long, device=logits.device)
        longest.scatter_reduce_(1, w[:, 1:], values, reduce="amax")
        hit = longest >= allowed
        if self._breaks.single.numel():
            hit[:, self._breaks.single.to(logits.device)] = False
        if not bool(hit.any()):
            return logits
        exponent = (longest - allowed).clamp(min=0)
        if self._max_exponent > 0:
            exponent = exponent.clamp(max=self._max_exponent)
        penalty = (self.multiplier * self.base ** exponent.double()).clamp(max=MAX_DRY_PENALTY)
        return logits - torch.where(hit, penalty, torch.zeros_like(penalty)).to(logits.dtype)


def _suffix_repeats(w: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """(B, n - 1) long: ``L(j) = min(limit, longest k with w[j-k+1..j] == w[n-k..n-1])``.

    Grown one token back per pass over every ``j`` at once; stops when no ``j`` still matches.
    (The NumPy version, ``numpy_rules.dry_repeats``, follows only the ``j`` still matching.)
    """
    rows, n = w.shape
    m = n - 1
    alive = torch.ones((rows, m), dtype=torch.bool, device=w.device)
    repeat = torch.zeros((rows, m), dtype=torch.long, device=w.device)
    limit = limit.to(w.device)
    for k in range(min(int(limit.max()), m)):
        # position j (>= k) still matches when w[j - k] == w[n - 1 - k]
        alive[:, k:] &= w[:, : m - k] == w[:, n - 1 - k : n - k]
        if k:
            alive[:, k - 1] = False  # j = k - 1 has no token k back
        alive &= (limit > k)[:, None]
        if not bool(alive.any()):
            break
        repeat += alive
    return repeat


class _Breakers:
    """DRY's sequence breakers as token ids: single tokens, and (head, tail) sequences."""

    def __init__(
        self,
        single: Sequence[int] = (),
        sequences: Sequence[tuple[int, tuple[int, ...]]] = (),
    ) -> None:
        self.single = torch.tensor(sorted(set(single)), dtype=torch.long)
        self.single_set = frozenset(self.single.tolist())
        # table[i]: token i is a single breaker (ids past the table clip to its last, False)
        self.table = np.zeros(max(self.single_set, default=-2) + 2, dtype=bool)
        self.table[self.single.numpy()] = True
        self.sequences = list(sequences)
        self.longest_tail = max((len(tail) for _, tail in self.sequences), default=0)

    @classmethod
    def resolve(cls, breakers: list[str], pieces: list[str]) -> _Breakers:
        single: set[int] = set()
        sequences: list[tuple[int, tuple[int, ...]]] = []
        for breaker in breakers:
            for token, word in enumerate(pieces):
                if not word:
                    continue
                if breaker in word:
                    single.add(token)
                    continue
                pos = word.find(breaker[0])
                while pos >= 0:
                    rest = word[pos:]
                    if breaker.startswith(rest):
                        tail = _spell(breaker[len(rest) :], pieces)
                        if tail is not None:
                            entry = (token, tail[:MAX_BREAKER_TOKENS])
                            if entry not in sequences:
                                sequences.append(entry)
                    pos = word.find(breaker[0], pos + 1)
        return cls(sorted(single), sequences)

    def limits(self, w: np.ndarray | torch.Tensor, most: int = 0) -> np.ndarray:
        """(B,) int64: the tokens of each row after its most recent breaker (``n`` if none),
        at most ``most`` when ``most > 0``.

        A breaker whose head lies before the last ``most + longest tail + 1`` tokens leaves
        more than ``most`` tokens after it, so only those last tokens are read (a tensor's
        are copied to the CPU).
        """
        n = w.shape[1]
        start = max(0, n - most - self.longest_tail - 1) if most > 0 else 0
        tail = w[:, start:]
        if isinstance(tail, torch.Tensor):
            tail = tail.cpu().numpy()
        found = [numpy_rules.breaker_limit(row, n, self.table, self.sequences) for row in tail]
        return np.minimum(found, most) if most > 0 else np.array(found, dtype=np.int64)


def _spell(text: str, pieces: list[str]) -> tuple[int, ...] | None:
    """``text`` as token ids by greedy longest match over ``pieces`` (None if impossible)."""
    ids: dict[str, int] = {}
    for token, piece in enumerate(pieces):
        if piece:
            ids.setdefault(piece, token)
    longest = max((len(p) for p in ids), default=0)
    out: list[int] = []
    at = 0
    while at < len(text):
        for size in range(min(longest, len(text) - at), 0, -1):
            found = ids.get(text[at : at + size])
            if found is not None:
                out.append(found)
                at += size
                break
        else:
            return None
    return tuple(out)


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
