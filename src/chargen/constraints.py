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

This module holds the flags' limits, their checks, the cached automata and ``rules``, which
builds the rules; ``constraint_automaton.py`` turns a pattern into an automaton,
``constraint_index.py`` walks it over the vocabulary's token texts, and ``constraint_rules.py``
holds the rules themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from chargen.constraint_automaton import REDUCE_BELOW, Automaton, build
from chargen.constraint_automaton import show as _show
from chargen.constraint_index import CACHED_TABLES, DEAD, RegexIndex
from chargen.constraint_rules import BIAS_RANGE, BanChars, BanStrings, LogitBias, Regex, parse_bias
from chargen.errors import SamplingError
from chargen.sampling import LogitsProcessor, SamplingConfig

__all__ = [
    "BIAS_RANGE",
    "CACHED_TABLES",
    "DEAD",
    "MAX_BAN_CHARS",
    "MAX_BAN_STRINGS",
    "MAX_BAN_STRING_CHARS",
    "MAX_BUILD_SECONDS",
    "MAX_LOGIT_BIAS",
    "MAX_REGEX_CHARS",
    "MAX_STATES",
    "NEEDS_VOCAB",
    "REDUCE_BELOW",
    "Automaton",
    "BanChars",
    "BanStrings",
    "LogitBias",
    "Regex",
    "RegexIndex",
    "automaton",
    "check",
    "matches",
    "parse_bias",
    "rules",
]

MAX_REGEX_CHARS = 1000
MAX_STATES = 10_000  # automaton states interegular may visit while building one pattern
MAX_BUILD_SECONDS = 2.0  # and the time it may take (its cost per state grows with the states)
MAX_BAN_CHARS = 1000
MAX_BAN_STRINGS = 256
MAX_BAN_STRING_CHARS = 256
MAX_LOGIT_BIAS = 1024
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


def _bans(cfg: SamplingConfig) -> tuple[str, ...]:
    """Every banned character and string, sorted (one cache key for one set of bans)."""
    return tuple(sorted(set(cfg.ban_chars) | set(cfg.ban_strings)))


def matches(cfg: SamplingConfig, text: str) -> bool | None:
    """Whether ``text`` matches ``cfg.regex`` in full (bans included); None without a regex."""
    if cfg.regex is None:
        return None
    return automaton(cfg.regex, _bans(cfg)).accepts(text)


@lru_cache(maxsize=32)
def automaton(pattern: str, bans: tuple[str, ...] = ()) -> Automaton:
    """The automaton of ``pattern`` (full match) whose texts hold none of ``bans``, within this
    module's limits (``constraint_automaton.build``; cached per pattern and bans).

    Raises SamplingError, one line: a pattern too long, a syntax error, an unsupported construct
    (named), too many states, a pattern no text matches, or one only the empty text matches.
    """
    if len(pattern) > MAX_REGEX_CHARS:
        raise SamplingError(f"--regex takes at most {MAX_REGEX_CHARS} characters")
    return build(pattern, bans, max_states=MAX_STATES, max_seconds=MAX_BUILD_SECONDS)


@lru_cache(maxsize=16)
def _regex_index(pattern: str, bans: tuple[str, ...], vocab: tuple[str, ...]) -> RegexIndex:
    return RegexIndex(automaton(pattern, bans), vocab)


# --------------------------------------------------------------------------- rules
def rules(cfg: SamplingConfig, vocab: Sequence[str] | None = None) -> list[LogitsProcessor]:
    """The rules (``constraint_rules.py``) that ``cfg`` switches on, for a model whose token
    ``i`` spells ``vocab[i]``: logit bias, banned characters, banned strings, regex (the regex
    last, so it sees every other mask of the stage)."""
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
        out.append(Regex(cfg.regex, _regex_index(cfg.regex, _bans(cfg), texts)))
    return out
