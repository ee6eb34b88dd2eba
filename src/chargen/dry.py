"""DRY, "don't repeat yourself" (p-e-w, 2024): the repetition-aware rule of ``samplers.py``.

A penalty (stage 1, on the raw logits) on each token that would extend a repeat of the text
written so far, as llama.cpp computes it; its sequence breakers (``_Breakers``) are resolved
against the token texts. ``samplers.rules`` builds it and ``samplers.check`` validates its
settings; every name here is importable from ``samplers`` too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from chargen import numpy_rules
from chargen.sampling import PENALTY, ArrayT, Rule

MAX_BREAKER_TOKENS = 20  # tokens of a breaker's tail after its head token (llama.cpp's cap)
FLOAT_MAX_LOG = 88.7228391  # ln(float32 max): llama.cpp's bound on DRY's exponent
MAX_DRY_PENALTY = 1e30  # a DRY penalty never exceeds this, so a penalised logit stays finite


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
