"""The regex automaton seen through a model's vocabulary: for each automaton state, the tokens
whose whole text keeps a match possible and the state each leads to.

The vocabulary is walked as a trie of its token texts (a dead prefix prunes every token that
shares it), one state at a time when a state is first met, and the tables are cached on the
``RegexIndex`` (``constraints.py`` keeps one index per (pattern, bans, vocabulary), so a
server reuses them across requests). A state counts only when the model's tokens can still
reach an accepting state from it: the automaton's own liveness is not enough.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from chargen.constraint_automaton import Automaton

CACHED_TABLES = 512  # token tables kept per (pattern, vocabulary) before the cache is cleared
DEAD = -1  # a row whose token left the automaton (only when a caller ignores the mask)


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
