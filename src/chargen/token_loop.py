"""The one token loop: every row in flight advances one token per model step.

``generate`` (the command line, the Python API, ``--num-samples``), the plain torch-free path
(``lite.py``) and the server's continuous batching (``server/batcher.py``) all draw their
tokens here. A ``TokenLoop`` holds a ``RowStepper`` (the family's one-token step over a batch
of rows whose state it keeps: ``NumpyRNNStep`` for LSTM/GRU on the CPU, ``TorchRows`` for any
model on any device) and the ``Stream``s in flight; ``tick`` runs ONE model step for all their
rows, then draws one token per row with each stream's own chain:

    logits = stepper.step(last token of every row)          (B, V) float32
    for each group of streams whose chains can share a pass (equal ``chain.key``):
        ids, log p, entropy = chain.draw_arrays(logits[rows], history, u, step)

``u`` is row ``r``'s counter-based uniform ``u(seed_r, made_r)`` (``rng.py``), so a row draws
what it would draw alone, whatever else is in the batch: K samples together equal K samples
one at a time, and a served sample equals the command line's. Streams join (``add``, their
prompt already read into a state) and leave (``remove``) between ticks; the stepper keeps
the state of the rows in flight as one batch, so a tick copies no state.

This module imports no torch: the NumPy engine and the plain path run without it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from chargen.numpy_draw import non_finite_error, usable
from chargen.rng import UniformDraws, uniforms_at


class RowStepper(Protocol):
    """A batch of rows whose model state the stepper keeps, one token per row per step."""

    clamps: Any  # units held at every step (``clamp.Clamps``, one row or one per row), or None

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        ...

    def step(self, last: np.ndarray) -> np.ndarray:
        """Read ``last`` (rows,) int64, one token per row; the next-token logits (rows, V)
        float32 on the CPU (a buffer the next step may reuse)."""
        ...

    def keep(self, rows: np.ndarray) -> None:
        """Keep these rows of the state, in this order (repeats allowed: beams)."""
        ...

    def add(self, state: Sequence[Any], copies: int = 1) -> None:
        """Append the rows of a family state (each part (layers, rows, ...)) after the others,
        each row ``copies`` times."""
        ...

    def fresh(self) -> RowStepper:
        """A stepper over the same weights (shared, not copied) with no rows."""
        ...

    def parts(self) -> Sequence[Any]:
        """The state of the rows in flight (what ``add`` takes; empty with no rows)."""
        ...


class Drawer(Protocol):
    """What the loop needs of a sampling chain (``chain.SamplingChain``; ``numpy_draw``'s
    ``TemperatureDraw`` on the torch-free path)."""

    key: Hashable  # equal keys: rows can share one pass (no history read, no state)
    reads_history: bool
    stateful: bool
    ends_rows: bool

    def reset(self, seeds: list[int]) -> None: ...

    def draw_arrays(
        self, logits: np.ndarray, history: np.ndarray, u: np.ndarray, step: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (B,), log p of each (B,), entropy (B,)) drawn with one uniform per row from
        ``logits`` the loop has checked (``numpy_draw.usable``)."""
        ...

    def done_rows(self) -> np.ndarray | None:
        """(B,) bool: rows a rule ended (a complete regex match); None when none can."""
        ...


@dataclass(eq=False)
class Stream:
    """One request's rows: one chain, one seed per row, the prompt and up to ``length`` tokens.

    ``history[:, :n]`` is the prompt then the tokens drawn; ``logprobs[:, t]`` and
    ``entropies[:, t]`` describe draw ``t`` (nats).
    """

    chain: Drawer
    seeds: list[int]
    prompt: list[int]
    length: int
    clamps: Any = None  # units held in this stream's rows (``clamp.Clamps``), or None
    tag: Any = None  # the caller's own (the server's job)
    made: int = 0
    history: np.ndarray = field(init=False)
    logprobs: np.ndarray = field(init=False)
    entropies: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rows, p = len(self.seeds), len(self.prompt)
        self.history = np.empty((rows, p + self.length), dtype=np.int64)
        self.history[:, :p] = np.asarray(self.prompt, dtype=np.int64)
        self.logprobs = np.zeros((rows, self.length), dtype=np.float32)
        self.entropies = np.zeros((rows, self.length), dtype=np.float32)
        self.draws = UniformDraws(self.seeds)
        self.chain.reset(list(self.seeds))

    @property
    def rows(self) -> int:
        return len(self.seeds)

    @property
    def n(self) -> int:
        """Tokens in the history: the prompt and those drawn."""
        return len(self.prompt) + self.made

    @property
    def full(self) -> bool:
        return self.made >= self.length

    def last_drawn(self) -> np.ndarray:
        """The tokens of the latest draw (rows,)."""
        return self.history[:, self.n - 1]


class StreamFailed(Exception):
    """A stream's rows could not be drawn this tick (``cause`` says why); the others went on."""

    def __init__(self, stream: Stream, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.stream = stream
        self.cause = cause


class TokenLoop:
    """The streams in flight over one ``RowStepper``; ``tick`` draws one token in each row."""

    def __init__(self, stepper: RowStepper) -> None:
        self.stepper = stepper
        self.streams: list[Stream] = []
        self.steps = 0  # model steps taken

    def add(self, stream: Stream, state: Sequence[Any]) -> None:
        """Start ``stream`` from ``state`` (one row, or one per row of the stream): its prompt
        read up to, not including, its last token, which its first tick reads."""
        rows = state[0].shape[1]
        if rows not in (1, stream.rows):
            raise ValueError(f"a state of {rows} rows for a stream of {stream.rows}")
        self.stepper.add(state, stream.rows // rows)
        self.streams.append(stream)
        self._held_units()

    def replace_stepper(self, stepper: RowStepper) -> None:
        """Go on with ``stepper`` (new weights): the rows in flight keep their state."""
        if self.stepper.rows:
            stepper.add(self.stepper.parts())
        self.stepper = stepper
        self._held_units()

    def remove(self, streams: Sequence[Stream]) -> None:
        """Take ``streams`` out of the batch (their state rows are dropped)."""
        gone = set(map(id, streams))
        keep: list[int] = []
        start = 0
        kept = []
        for stream in self.streams:
            if id(stream) not in gone:
                keep.extend(range(start, start + stream.rows))
                kept.append(stream)
            start += stream.rows
        if len(kept) == len(self.streams):
            return
        self.stepper.keep(np.asarray(keep, dtype=np.int64))
        self.streams = kept
        self._held_units()

    def _held_units(self) -> None:
        """The stepper's clamps for the rows now in flight (each stream its own units)."""
        held = [s.clamps for s in self.streams]
        if not any(c is not None for c in held):
            self.stepper.clamps = None
        elif len(self.streams) == 1:
            self.stepper.clamps = held[0]  # one row of units, broadcast over the stream's rows
        else:
            from chargen.clamp import Clamps  # torch: only where units are held

            self.stepper.clamps = Clamps.stack([s.clamps for s in self.streams for _ in s.seeds])

    def tick(self) -> list[StreamFailed]:
        """One model step for every row in flight and one token drawn in each.

        A stream whose rows cannot be drawn (non-finite model scores in its rows, its rules
        failing) is reported in the list returned and left out of this tick's draw; the
        caller removes it. The others are unaffected.
        """
        streams = self.streams
        if not streams:
            return []
        if len(streams) == 1:  # the command line's case, kept short: a token costs ~40 us
            stream = streams[0]
            logits = self.stepper.step(stream.last_drawn())
            self.steps += 1
            try:
                if not usable(logits):
                    raise non_finite_error(stream.made)
                _draw_group([(stream, 0)], logits)
            except Exception as exc:
                return [StreamFailed(stream, exc)]
            return []
        logits = self.stepper.step(np.concatenate([s.last_drawn() for s in streams]))
        self.steps += 1
        failed: list[StreamFailed] = []
        bad = None if usable(logits) else _unusable_rows(logits)
        groups: dict[Hashable, list[tuple[Stream, int]]] = {}
        start = 0
        for stream in streams:
            end = start + stream.rows
            if bad is not None and bad[start:end].any():
                failed.append(StreamFailed(stream, non_finite_error(stream.made)))
            else:
                groups.setdefault(stream.chain.key, []).append((stream, start))
            start = end
        for members in groups.values():
            try:
                _draw_group(members, logits)
            except Exception as exc:  # this group's rules failed: its streams only
                failed.extend(StreamFailed(stream, exc) for stream, _ in members)
        return failed


def _draw_group(members: list[tuple[Stream, int]], logits: np.ndarray) -> None:
    """One token per row for streams that share a chain pass (one stream when its chain reads
    the history or keeps state), recorded in each stream."""
    chain = members[0][0].chain
    if len(members) == 1:
        stream, start = members[0]
        rows = logits[start : start + stream.rows] if len(logits) != stream.rows else logits
        history = stream.history[:, : stream.n]
        u = stream.draws(stream.made)
        ids, lp, ent = chain.draw_arrays(rows, history, u, stream.made)
        _record(stream, ids, lp, ent)
        return
    index = np.concatenate([np.arange(s, s + st.rows) for st, s in members])
    mixed = np.concatenate([st.draws.mixed for st, _ in members])
    made = np.concatenate([np.full(st.rows, st.made, dtype=np.int64) for st, _ in members])
    empty = np.zeros((len(index), 0), dtype=np.int64)  # shared passes read no history
    ids, lp, ent = chain.draw_arrays(logits[index], empty, uniforms_at(mixed, made), 0)
    at = 0
    for stream, _ in members:
        k = stream.rows
        _record(stream, ids[at : at + k], lp[at : at + k], ent[at : at + k])
        at += k


def _record(stream: Stream, ids: np.ndarray, lp: np.ndarray, ent: np.ndarray) -> None:
    t = stream.made
    stream.history[:, len(stream.prompt) + t] = ids
    stream.logprobs[:, t] = lp
    stream.entropies[:, t] = ent
    stream.made = t + 1


def _unusable_rows(logits: np.ndarray) -> np.ndarray:
    """(B,) bool: rows holding NaN or ``+inf``, or no logit above ``-inf``."""
    bad = np.isnan(logits) | np.isposinf(logits)
    return bad.any(axis=1) | ~(logits > -np.inf).any(axis=1)
