"""The constraint rules, each a first-stage (``PENALTY``) mask or shift of the raw logits:
``Regex`` (tokens that keep a full match possible), ``BanChars``, ``BanStrings`` (inside a
token or across its boundary with the text before it) and ``LogitBias``, each in torch and in
numpy. ``constraints.rules`` builds them from a ``SamplingConfig``; ``constraints.py`` says
what each flag does.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from chargen.constraint_automaton import show
from chargen.constraint_index import DEAD, RegexIndex
from chargen.errors import GenerationError, SamplingError
from chargen.numpy_rules import masked
from chargen.sampling import NEG_INF, PENALTY, ArrayT, Rule

BIAS_RANGE = (-100.0, 100.0)


def parse_bias(entry: str) -> tuple[str, float]:
    """``"TOKEN=BIAS"`` -> (TOKEN, BIAS); the last ``=`` splits, so ``"==2"`` biases ``"="``."""
    token, eq, value = entry.rpartition("=")
    try:
        bias = float(value)
    except ValueError:
        bias = math.nan
    low, high = BIAS_RANGE
    if not eq or not token or not math.isfinite(bias) or not low <= bias <= high:
        raise SamplingError(
            f"--logit-bias takes TOKEN=BIAS with BIAS a number in [{low:g}, {high:g}], "
            f"got {show(entry)}"
        )
    return token, bias


def _no_empty_rows(logits: ArrayT, flag: str) -> ArrayT:
    """``logits`` (a tensor or an array), unless a row lost every token: then one
    GenerationError naming ``flag``."""
    if bool((logits == NEG_INF).all(-1).any()):
        raise GenerationError(
            f"{flag} leaves no token the model can write here (with the other sampling rules)"
        )
    return logits


def _check_size(logits: torch.Tensor | np.ndarray, size: int) -> None:
    if logits.shape[-1] != size:
        raise ValueError(f"logits have {logits.shape[-1]} tokens, the vocabulary {size}")


class Regex(Rule):
    """Masks every token that cannot continue a full match of the pattern (as ``constraints.py``
    tells).

    State: the automaton state of each row. ``reset`` starts each row at the initial state
    (``__call__`` does so too when no reset came); ``observe`` follows each row's token;
    ``select`` follows the beams kept. A row that is ``done`` (a full match that cannot go on)
    keeps its logits unmasked and ignores later tokens: the loops have stopped reading it.
    """

    stage: ClassVar[int] = PENALTY
    stateful: ClassVar[bool] = True
    has_numpy: ClassVar[bool] = True
    ends_rows: ClassVar[bool] = True

    def __init__(self, pattern: str, index: RegexIndex) -> None:
        """``index``: the pattern's automaton (bans included) seen through the vocabulary
        (``constraints.rules`` hands the cached one)."""
        self.pattern = pattern
        self.index = index
        self.states: list[int] | None = None
        shown = show(pattern)
        if not len(self.index.table(self.index.initial)[0]):
            if not len(self.index._walk(self.index.initial)[0]):
                raise SamplingError(
                    f"--regex {shown}: no token of the model's vocabulary can start it"
                )
            raise SamplingError(
                f"--regex {shown}: no sequence of the model's tokens can complete a match"
            )

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    def reset(self, seeds: list[int]) -> None:
        self.states = [self.index.initial] * len(seeds)

    def _rows(self, rows: int) -> list[int]:
        if self.states is None:
            self.states = [self.index.initial] * rows
        if len(self.states) != rows:
            raise ValueError(f"the regex follows {len(self.states)} rows, the logits have {rows}")
        return self.states

    def _finished(self, state: int) -> bool:
        return state == DEAD or self.index.done(state)

    def _tables(self, rows: int) -> list[tuple[np.ndarray, np.ndarray, torch.Tensor] | None]:
        """Each row's ``RegexIndex.table`` (the tokens it allows), None for a finished row."""
        return [None if self._finished(s) else self.index.table(s) for s in self._rows(rows)]

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        _check_size(logits, self.index.size)
        out = np.full_like(logits, NEG_INF)
        for row, table in enumerate(self._tables(len(logits))):
            allowed = slice(None) if table is None else table[0]
            out[row, allowed] = logits[row, allowed]
        return _no_empty_rows(out, "--regex")

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        _check_size(logits, self.index.size)
        keep = torch.zeros(logits.shape, dtype=torch.bool)
        for row, table in enumerate(self._tables(logits.shape[0])):
            keep[row, slice(None) if table is None else table[2]] = True
        return _no_empty_rows(logits.masked_fill(~keep.to(logits.device), NEG_INF), "--regex")

    def observe(self, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        states = self._rows(int(tokens.shape[0]))
        for row, token in enumerate(tokens.tolist()):
            if not self._finished(states[row]):
                states[row] = self.index.next_state(states[row], token)

    def select(self, rows: torch.Tensor) -> None:
        states = self.states or []
        self.states = [states[i] for i in rows.tolist()]

    def done(self) -> torch.Tensor:
        """(B,) bool: rows whose automaton can go no further (a full match)."""
        states = self.states or []
        return torch.from_numpy(np.fromiter(map(self._finished, states), bool, len(states)))


class BanChars(Rule):
    """Masks every token whose text holds a banned character."""

    stage: ClassVar[int] = PENALTY
    has_numpy: ClassVar[bool] = True

    def __init__(self, chars: str, vocab: tuple[str, ...]) -> None:
        banned = frozenset(chars)
        self.mask = np.array([not banned.isdisjoint(text) for text in vocab], dtype=bool)
        self.banned = torch.from_numpy(self.mask)
        if self.mask.all():
            raise SamplingError(f"--ban-chars {show(chars)} bans every token of the vocabulary")

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        _check_size(logits, len(self.mask))
        return _no_empty_rows(masked(logits, self.mask), "--ban-chars")

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        _check_size(logits, len(self.banned))
        masked = logits.masked_fill(self.banned.to(logits.device), NEG_INF)
        return _no_empty_rows(masked, "--ban-chars")


class BanStrings(Rule):
    """Masks every token that would complete a banned string, inside the token or across the
    boundary with the text before it (the history decoded, prompt included).

    A string ``s`` ends inside the candidate token ``x`` either wholly inside ``x`` (a fixed
    mask) or as ``s[:i]`` ending the text so far and ``s[i:]`` starting ``x``, for some
    ``0 < i < len(s)``; the last ``max len(s) - 1`` characters of the text decide the second
    (every token has at least one character, so that many tokens hold them).
    """

    stage: ClassVar[int] = PENALTY
    reads_history: ClassVar[bool] = True
    has_numpy: ClassVar[bool] = True

    def __init__(self, strings: tuple[str, ...], vocab: tuple[str, ...]) -> None:
        self.vocab = vocab
        self.inside = np.array([any(s in text for s in strings) for text in vocab], dtype=bool)
        if self.inside.all():
            raise SamplingError("--ban-strings bans every token of the vocabulary")
        self.look = max(len(s) for s in strings) - 1
        starts: dict[str, np.ndarray] = {}
        self.splits: list[tuple[str, np.ndarray]] = []
        for head, rest in dict.fromkeys((s[:i], s[i:]) for s in strings for i in range(1, len(s))):
            if rest not in starts:
                starts[rest] = np.array([text.startswith(rest) for text in vocab], dtype=bool)
            if starts[rest].any():
                self.splits.append((head, starts[rest]))

    def banned(self, history: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, V) bool: the tokens that would complete a banned string after each row."""
        banned = np.repeat(self.inside[None], history.shape[0], axis=0)
        if self.splits and self.look and history.shape[1]:
            recent = history[:, -self.look :].tolist()
            for row, ids in enumerate(recent):
                text = "".join(self.vocab[i] for i in ids)[-self.look :]
                for head, starting in self.splits:
                    if text.endswith(head):
                        banned[row] |= starting
        return banned

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        _check_size(logits, len(self.vocab))
        return _no_empty_rows(masked(logits, self.banned(history)), "--ban-strings")

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        _check_size(logits, len(self.vocab))
        banned = torch.from_numpy(self.banned(history)).to(logits.device)
        return _no_empty_rows(logits.masked_fill(banned, NEG_INF), "--ban-strings")


class LogitBias(Rule):
    """Adds each named token's bias to its logit: ``l + b``."""

    stage: ClassVar[int] = PENALTY
    has_numpy: ClassVar[bool] = True

    def __init__(self, entries: tuple[str, ...], vocab: tuple[str, ...]) -> None:
        ids: dict[str, int] = {}
        for token, text in enumerate(vocab):
            ids.setdefault(text, token)
        self.bias = torch.zeros(len(vocab))  # float32; ``numpy`` reads the same memory
        for entry in entries:
            text, bias = parse_bias(entry)
            if text not in ids:
                raise SamplingError(
                    f"--logit-bias: {text!r} is not a token of the model's vocabulary "
                    "(a char run's tokens are single characters)"
                )
            self.bias[ids[text]] = bias

    def numpy(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        _check_size(logits, len(self.bias))
        return logits + self.bias.numpy().astype(logits.dtype, copy=False)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        _check_size(logits, len(self.bias))
        return logits + self.bias.to(device=logits.device, dtype=logits.dtype)
