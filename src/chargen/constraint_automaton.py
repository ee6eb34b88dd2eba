"""A regex as a deterministic automaton over characters: ``build`` reads the pattern with
``re`` (for its syntax errors) and turns it into interegular's FSM, intersected with "no banned
string anywhere" when there are bans, within a budget of states and seconds (interegular has
no limit of its own: its one building routine, ``crawl``, is wrapped here to count them), and
``Automaton`` walks it one character at a time, knowing which states can still reach an
accepting one. Every failure is a one-line SamplingError naming the pattern
(``constraints.py`` says which patterns are supported), quoted by ``show``, which every
constraint message uses.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import interegular
import interegular.fsm as _interegular_fsm

from chargen.errors import SamplingError

REDUCE_BELOW = 2000  # automata up to this size are minimised (fewer states, fewer tables)


def show(text: str, most: int = 60) -> str:
    """``text`` quoted on one line: control characters escaped, backslashes left single."""
    short = text if len(text) <= most else text[: most - 3] + "..."
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in short) + "'"


@dataclass(frozen=True, eq=False)
class Automaton:
    """A deterministic automaton over characters (interegular's FSM) that knows its live states,
    those from which an accepting state can be reached: a step into any other returns None."""

    initial: int
    finals: frozenset[int]
    map: dict[int, dict[Any, int]]  # state -> {transition key: next state}
    alphabet: Any  # interegular's Alphabet: character -> transition key (or None)
    live: frozenset[int]

    def step(self, state: int, char: str) -> int | None:
        key = self.alphabet[char]
        nxt = None if key is None else self.map[state].get(key)
        return nxt if nxt in self.live else None

    def accepts(self, text: str) -> bool:
        state: int | None = self.initial if self.initial in self.live else None
        for char in text:
            if state is None:
                return False
            state = self.step(state, char)
        return state is not None and state in self.finals


class _TooBig(Exception):
    pass


_budget = threading.local()
_crawl = _interegular_fsm.crawl


def _counted_crawl(alphabet: Any, initial: Any, final: Any, follow: Any) -> Any:
    """interegular's ``crawl`` (every automaton it builds goes through it), counting the states
    it visits against the budget of ``_state_budget`` when one is set in this thread."""
    if getattr(_budget, "left", None) is None:
        return _crawl(alphabet, initial, final, follow)

    def counted(state: Any) -> Any:
        _budget.left -= 1
        if _budget.left < 0 or time.monotonic() > _budget.deadline:
            raise _TooBig
        return final(state)

    return _crawl(alphabet, initial, counted, follow)


# interegular has no size limit of its own and builds every automaton with this one routine:
# it is wrapped here, for the whole process, and counts only while a budget is set in the thread
_interegular_fsm.crawl = _counted_crawl


@contextmanager
def _state_budget(states: int, seconds: float) -> Iterator[None]:
    _budget.left = states
    _budget.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _budget.left = None


def build(pattern: str, bans: tuple[str, ...], *, max_states: int, max_seconds: float) -> Automaton:
    """The automaton of ``pattern`` (full match) whose texts hold none of ``bans``, built
    within ``max_states`` states and ``max_seconds`` seconds (``constraints.automaton`` checks
    the pattern's length, passes its limits and caches the result).

    Raises SamplingError, one line: a syntax error, an unsupported construct (named), too many
    states, a pattern no text matches, or one only the empty text matches.
    """
    shown = show(pattern)
    body = _strip_anchors(pattern)
    try:
        re.compile(body)
    except re.error as exc:
        raise SamplingError(f"--regex {shown}: {exc}") from None
    except (RecursionError, OverflowError):
        raise SamplingError(f"--regex {shown}: too deeply nested or too large") from None
    try:
        with _state_budget(max_states, max_seconds):
            fsm = interegular.parse_pattern(body).to_fsm()
            if bans:
                anywhere = "(?s:.*(?:" + "|".join(re.escape(b) for b in bans) + ").*)"
                fsm = fsm & interegular.parse_pattern(anywhere).to_fsm().everythingbut()
            if len(fsm.states) <= REDUCE_BELOW:
                fsm = fsm.reduce()
    except interegular.Unsupported as exc:
        raise SamplingError(
            f"--regex {shown}: {_construct(exc)} is not supported (the automaton is built by "
            "interegular: no backreferences, lookbehinds, \\b, inner anchors or conditionals)"
        ) from None
    except interegular.InvalidSyntax as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise SamplingError(f"--regex {shown}: interegular cannot read it{detail}") from None
    except _TooBig:
        raise SamplingError(
            f"--regex {shown}: its automaton is too large to build (more than {max_states} "
            f"states or {max_seconds:g} s); use fewer or smaller bounded repetitions"
        ) from None
    except RecursionError:
        raise SamplingError(f"--regex {shown}: too deeply nested") from None
    # cast: interegular's State and TransitionKey are NewTypes of int
    moves = cast("dict[int, dict[Any, int]]", fsm.map)
    made = Automaton(fsm.initial, frozenset(fsm.finals), moves, fsm.alphabet, _live(fsm))
    without = " without a banned character or string" if bans else ""
    if made.initial not in made.live:
        raise SamplingError(f"--regex {shown}: no text matches it{without}")
    if not any(made.map[made.initial].get(k) in made.live for k in made.map[made.initial]):
        raise SamplingError(
            f"--regex {shown}: only the empty text matches it{without}: nothing to generate"
        )
    return made


def _strip_anchors(pattern: str) -> str:
    """``pattern`` without a leading ``^`` and an unescaped trailing ``$`` (no-ops in a full
    match); anchors anywhere else stay, and interegular names them."""
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$"):
        escapes = len(body[:-1]) - len(body[:-1].rstrip("\\"))
        if escapes % 2 == 0:
            body = body[:-1]
    return body


def _construct(exc: Exception) -> str:
    """The construct an interegular ``Unsupported`` names, in words."""
    message = str(exc.args[0]) if exc.args else str(exc)
    if message in ("'^'", "'$'"):
        return f"the anchor {message} inside the pattern"
    if message.startswith("REFlags."):
        return f"the flag {message.removeprefix('REFlags.')}"
    for tail in (" are not implemented", " is not implemented"):
        message = message.removesuffix(tail)
    return {
        "Group references": "a backreference",
        "lookbacks": "a lookbehind",
        "Conditional matching": "a conditional group",
    }.get(message, message)


def _live(fsm: Any) -> frozenset[int]:
    """States from which an accepting state is reachable (a backward search from the finals)."""
    back: dict[int, set[int]] = {}
    for state, moves in fsm.map.items():
        for nxt in moves.values():
            back.setdefault(nxt, set()).add(state)
    live = set(fsm.finals)
    todo = list(live)
    while todo:
        for prev in back.get(todo.pop(), ()):
            if prev not in live:
                live.add(prev)
                todo.append(prev)
    return frozenset(live)
