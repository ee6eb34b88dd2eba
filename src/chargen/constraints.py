"""Character-exact constraints: a regex the continuation must match, banned characters and
strings, and a bias on named tokens.

Every rule here is a mask or a shift of the raw logits, so all of them act in the first stage
(``PENALTY``), with the penalties: a masked token is gone before the temperature reshapes the
distribution and before a truncation counts probability mass (top-p's 90 % is 90 % of what the
constraints allow), and greedy decoding (stage 1 only) obeys them too. They need the text of
each token (``vocab``: ``Tokenizer.token_texts`` of every id, ``<unk>`` as U+FFFD), which
``chain.SamplingChain(cfg, vocab=...)`` hands to ``rules``.

``--regex PATTERN``: the continuation (the prompt excluded) must match PATTERN in full, as
``re.fullmatch`` would. The pattern is read by ``re`` (for its syntax errors) and turned into a
deterministic automaton over characters by ``interegular`` (the library outlines uses). At each
step a token is allowed when walking the automaton over *every character of its text* (one
for a char run, several for words and BPE pieces) ends in a state from which some sequence of
the model's tokens reaches an accepting state; every other token is masked. The tables are
made lazily, one automaton state at a time, by walking a trie of the vocabulary (a dead prefix
prunes every token that shares it), and are kept per (pattern, vocabulary), so a server
reuses them across requests.

Ending. A row is *done* when its automaton is in an accepting state from which no token can go
on: the text is then a full match and nothing can be added (``T[^\\n]*\\n`` ends at its
newline, ``\\d{4}-\\d\\d-\\d\\d`` after its last digit). The generation loops stop such a row as
they stop a row that wrote a stop string. A pattern that can always go on (``[a-z ]+``) runs
to ``--length``, and its text matches when it stops in an accepting state. A text cut short by
``--length`` (or a stop string) before the pattern could complete is reported as not matching
(``Sample.matched``, the server's ``matched``, a warning on the command line), never returned
as a match. A pattern that only the empty text matches, that no text matches, or that no token
of the model can start (or no sequence of tokens complete) is a one-line error.

Syntax: a leading ``^`` and a trailing ``$`` are accepted and change nothing; ``\\d``, ``\\w``
and ``\\s`` are ASCII classes (interegular's); flags ``(?i)`` and ``(?s)`` work. Not supported,
each a one-line error naming the construct: backreferences, lookbehinds, ``\\b`` and the other
zero-width escapes, anchors inside the pattern, conditionals, ``(?m)``. A lookahead that
reaches past the end of the pattern (``a(?=b)``) is taken by interegular as part of the match.
Building an automaton may take at most ``MAX_STATES`` states and ``MAX_BUILD_SECONDS``
(``[ab]*a[ab]{20}`` needs millions of states), so no request can stall the process.

``--ban-chars CHARS`` masks every token whose text holds one of CHARS (a lipogram:
``--ban-chars eE``). ``--ban-strings S ...`` never lets S appear in the text, even across token
boundaries: a token is masked when it holds S, or when the end of the text so far followed by
the token's start spells S (the history, prompt included, is decoded for that). With a regex,
both are also folded into its automaton (the pattern intersected with "no banned string
anywhere"), so the regex never steers a row into a place only a banned string could finish.
``--logit-bias TOKEN=BIAS`` adds BIAS (in [-100, 100] nats) to the logit of the token whose text
is TOKEN.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, cast

import interegular
import interegular.fsm as _interegular_fsm
import numpy as np
import torch

from chargen.errors import GenerationError, SamplingError
from chargen.numpy_rules import masked
from chargen.sampling import NEG_INF, PENALTY, ArrayT, LogitsProcessor, Rule, SamplingConfig

MAX_REGEX_CHARS = 1000
MAX_STATES = 10_000  # automaton states interegular may visit while building one pattern
MAX_BUILD_SECONDS = 2.0  # and the time it may take (its cost per state grows with the states)
REDUCE_BELOW = 2000  # automata up to this size are minimised (fewer states, fewer tables)
MAX_BAN_CHARS = 1000
MAX_BAN_STRINGS = 256
MAX_BAN_STRING_CHARS = 256
MAX_LOGIT_BIAS = 1024
BIAS_RANGE = (-100.0, 100.0)
CACHED_TABLES = 512  # token tables kept per (pattern, vocabulary) before the cache is cleared
DEAD = -1  # a row whose token left the automaton (only when a caller ignores the mask)
NEEDS_VOCAB = (
    "--regex, --ban-chars, --ban-strings and --logit-bias need the model's vocabulary "
    "(build the chain as SamplingChain(cfg, vocab=token texts))"
)


# --------------------------------------------------------------------------- configuration
def check(cfg: SamplingConfig) -> None:
    """Raise SamplingError (one line naming the flag) on a bad constraint; lists become tuples.

    The regex is compiled here (and cached), so a bad pattern fails before any model is read.
    """
    if cfg.regex is not None and not isinstance(cfg.regex, str):
        raise SamplingError(f"--regex must be a string, got {cfg.regex!r}")
    if not isinstance(cfg.ban_chars, str) or len(cfg.ban_chars) > MAX_BAN_CHARS:
        raise SamplingError(f"--ban-chars must be a string of at most {MAX_BAN_CHARS} characters")
    cfg.ban_strings = _strings("--ban-strings", cfg.ban_strings, MAX_BAN_STRINGS)
    for text in cfg.ban_strings:
        if not 1 <= len(text) <= MAX_BAN_STRING_CHARS:
            raise SamplingError(
                f"--ban-strings takes strings of 1 to {MAX_BAN_STRING_CHARS} characters, "
                f"got {_show(text)}"
            )
    cfg.logit_bias = _strings("--logit-bias", cfg.logit_bias, MAX_LOGIT_BIAS)
    seen: set[str] = set()
    for entry in cfg.logit_bias:
        token, _ = parse_bias(entry)
        if token in seen:
            raise SamplingError(f"--logit-bias names the token {token!r} twice")
        seen.add(token)
    if cfg.regex is not None:
        automaton(cfg.regex, _bans(cfg))


def _strings(flag: str, value: Any, most: int) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(v, str) for v in value)
    ):
        raise SamplingError(f"{flag} takes a list of strings, got {type(value).__name__}")
    if len(value) > most:
        raise SamplingError(f"{flag} takes at most {most} strings, got {len(value)}")
    return tuple(value)


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
            f"got {_show(entry)}"
        )
    return token, bias


def _bans(cfg: SamplingConfig) -> tuple[str, ...]:
    """Every banned character and string, sorted (one cache key for one set of bans)."""
    return tuple(sorted(set(cfg.ban_chars) | set(cfg.ban_strings)))


def _show(text: str, most: int = 60) -> str:
    """``text`` quoted on one line: control characters escaped, backslashes left single."""
    short = text if len(text) <= most else text[: most - 3] + "..."
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in short) + "'"


def matches(cfg: SamplingConfig, text: str) -> bool | None:
    """Whether ``text`` matches ``cfg.regex`` in full (bans included); None without a regex."""
    if cfg.regex is None:
        return None
    return automaton(cfg.regex, _bans(cfg)).accepts(text)


# --------------------------------------------------------------------------- the automaton
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


@lru_cache(maxsize=32)
def automaton(pattern: str, bans: tuple[str, ...] = ()) -> Automaton:
    """The automaton of ``pattern`` (full match) whose texts hold none of ``bans``.

    Raises SamplingError, one line: a syntax error, an unsupported construct (named), too many
    states, a pattern no text matches, or one only the empty text matches.
    """
    shown = _show(pattern)
    if len(pattern) > MAX_REGEX_CHARS:
        raise SamplingError(f"--regex takes at most {MAX_REGEX_CHARS} characters")
    body = _strip_anchors(pattern)
    try:
        re.compile(body)
    except re.error as exc:
        raise SamplingError(f"--regex {shown}: {exc}") from None
    except (RecursionError, OverflowError):
        raise SamplingError(f"--regex {shown}: too deeply nested or too large") from None
    try:
        with _state_budget(MAX_STATES, MAX_BUILD_SECONDS):
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
            f"--regex {shown}: its automaton is too large to build (more than {MAX_STATES} "
            f"states or {MAX_BUILD_SECONDS:g} s); use fewer or smaller bounded repetitions"
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


# --------------------------------------------------------------------------- tokens
class _Trie:
    """The token texts of a vocabulary as a trie: ``children[node]`` maps a character to the
    next node, ``ends[node]`` lists the tokens whose text ends there (node 0 is the root)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.chars = frozenset("".join(vocab))
        self.children: list[dict[str, int]] = [{}]
        self.ends: list[list[int]] = [[]]
        for token, text in enumerate(vocab):
            node = 0
            for char in text:
                nxt = self.children[node].get(char)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][char] = nxt
                    self.children.append({})
                    self.ends.append([])
                node = nxt
            if node:  # an empty token text would make no progress: never allowed
                self.ends[node].append(token)


@lru_cache(maxsize=8)
def _trie(vocab: tuple[str, ...]) -> _Trie:
    return _Trie(vocab)


class RegexIndex:
    """The automaton seen through a vocabulary: per state, the tokens that keep a match
    possible and the state each leads to (made lazily, cached).

    A state is *token-live* when it is accepting or some token leads to a token-live state:
    the automaton's own liveness is not enough, because a vocabulary may lack the pieces a
    path needs (a word run has no token for half of a word).
    """

    def __init__(self, machine: Automaton, vocab: tuple[str, ...]) -> None:
        self.machine = machine
        self.size = len(vocab)
        self.trie = _trie(vocab)
        self.initial = machine.initial
        self._successors: dict[int, frozenset[int]] = {}
        self._char_moves: dict[int, dict[str, int]] = {}
        self._alive: dict[int, bool] = {}
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, torch.Tensor]] = {}
        self._token_moves: dict[int, dict[int, int]] = {}
        self._lock = threading.Lock()

    def _moves(self, state: int) -> dict[str, int]:
        """{character of the vocabulary: next live state} from ``state`` (cached)."""
        found = self._char_moves.get(state)
        if found is None:
            step = self.machine.step
            found = {c: nxt for c in self.trie.chars if (nxt := step(state, c)) is not None}
            self._char_moves[state] = found
        return found

    def _walk(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, next states) of every token whose characters all keep ``state`` live."""
        tokens: list[int] = []
        states: list[int] = []
        children, ends = self.trie.children, self.trie.ends
        stack = [(0, state)]
        while stack:
            node, at = stack.pop()
            here, moves = children[node], self._moves(at)
            if len(moves) < len(here):  # walk the smaller side: few characters go on
                pairs = [(here[c], nxt) for c, nxt in moves.items() if c in here]
            else:
                pairs = [(child, moves[c]) for c, child in here.items() if c in moves]
            for child, nxt in pairs:
                for token in ends[child]:
                    tokens.append(token)
                    states.append(nxt)
                if children[child]:
                    stack.append((child, nxt))
        ids = np.asarray(tokens, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return ids[order], np.asarray(states, dtype=np.int64)[order]

    def successors(self, state: int) -> frozenset[int]:
        found = self._successors.get(state)
        if found is None:
            found = frozenset(self._walk(state)[1].tolist())
            self._successors[state] = found
        return found

    def alive(self, state: int) -> bool:
        """Token-liveness: a breadth-first search over token moves for an accepting state.

        A search that finds none marks every state it saw dead (they only reach each other);
        one that finds one marks the path to it live.
        """
        known = self._alive.get(state)
        if known is not None:
            return known
        parent: dict[int, int | None] = {state: None}
        queue = [state]
        found = None
        for at in queue:  # the list grows while it is read
            if at in self.machine.finals or self._alive.get(at):
                found = at
                break
            for nxt in self.successors(at):
                if nxt not in parent and self._alive.get(nxt) is not False:
                    parent[nxt] = at
                    queue.append(nxt)
        if found is None:
            for seen in parent:
                self._alive[seen] = False
            return False
        node: int | None = found
        while node is not None:
            self._alive[node] = True
            node = parent[node]
        return True

    def table(self, state: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(allowed token ids (sorted), the state each leads to, the same ids as a tensor)."""
        with self._lock:
            found = self._tables.get(state)
            if found is None:
                ids, nexts = self._walk(state)
                keep = np.fromiter((self.alive(s) for s in nexts.tolist()), bool, len(nexts))
                ids, nexts = ids[keep], nexts[keep]
                if len(self._tables) >= CACHED_TABLES:
                    self._tables.clear()
                found = (ids, nexts, torch.from_numpy(ids))
                self._tables[state] = found
            return found

    def moves(self, state: int) -> dict[int, int]:
        """``table(state)`` as a dict, {allowed token: the state it leads to} (cached)."""
        found = self._token_moves.get(state)
        if found is None:
            ids, nexts, _ = self.table(state)
            found = dict(zip(ids.tolist(), nexts.tolist(), strict=True))
            if len(self._token_moves) >= CACHED_TABLES:
                self._token_moves.clear()
            self._token_moves[state] = found
        return found

    def done(self, state: int) -> bool:
        """Accepting with no token that can go on: a full match, nothing more to add."""
        return state in self.machine.finals and not self.moves(state)

    def next_state(self, state: int, token: int) -> int:
        """The state ``token`` leads to from ``state``; DEAD if it is not allowed there."""
        return self.moves(state).get(token, DEAD)


@lru_cache(maxsize=16)
def _regex_index(pattern: str, bans: tuple[str, ...], vocab: tuple[str, ...]) -> RegexIndex:
    return RegexIndex(automaton(pattern, bans), vocab)


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


# --------------------------------------------------------------------------- rules
class Regex(Rule):
    """Masks every token that cannot continue a full match of the pattern (see the module notes).

    State: the automaton state of each row. ``reset`` starts each row at the initial state
    (``__call__`` does so too when no reset came); ``observe`` follows each row's token;
    ``select`` follows the beams kept. A row that is ``done`` (a full match that cannot go on)
    keeps its logits unmasked and ignores later tokens: the loops have stopped reading it.
    """

    stage: ClassVar[int] = PENALTY
    stateful: ClassVar[bool] = True
    has_numpy: ClassVar[bool] = True
    ends_rows: ClassVar[bool] = True

    def __init__(self, pattern: str, bans: tuple[str, ...], vocab: tuple[str, ...]) -> None:
        self.pattern = pattern
        self.index = _regex_index(pattern, bans, vocab)
        self.states: list[int] | None = None
        shown = _show(pattern)
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
            raise SamplingError(f"--ban-chars {_show(chars)} bans every token of the vocabulary")

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


def rules(cfg: SamplingConfig, vocab: Sequence[str] | None = None) -> list[LogitsProcessor]:
    """The rules of this module that ``cfg`` switches on, for a model whose token ``i`` spells
    ``vocab[i]``: logit bias, banned characters, banned strings, regex (the regex last, so it
    sees every other mask of the stage)."""
    if cfg.regex is None and not (cfg.ban_chars or cfg.ban_strings or cfg.logit_bias):
        return []
    if vocab is None:
        raise SamplingError(NEEDS_VOCAB)
    texts = tuple(vocab)
    out: list[LogitsProcessor] = []
    if cfg.logit_bias:
        out.append(LogitBias(cfg.logit_bias, texts))
    if cfg.ban_chars:
        out.append(BanChars(cfg.ban_chars, texts))
    if cfg.ban_strings:
        out.append(BanStrings(cfg.ban_strings, texts))
    if cfg.regex is not None:
        out.append(Regex(cfg.regex, _bans(cfg), texts))
    return out
