"""Features of a text, one number per character, to correlate with a model's units.

Each built-in feature is a function ``text -> float32 array (len(text),)`` whose docstring
states its definition in one line. Character ``i``'s value describes the text read up to and
including ``i``, the state a model is in after reading it (``chargen neurons`` colours
character ``i`` by the activation after reading it). Everything is vectorised over code
points; predicates on characters (``isalnum``, ``isupper``) are evaluated once per distinct
character.

``--feature NAME=REGEX`` adds a user feature: 1 for the characters inside a match of REGEX
(``re.finditer`` over the whole text; empty matches mark nothing), 0 elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from chargen.errors import ConfigError

NEWLINE, SPACE, TAB = 10, 32, 9
DOUBLE_QUOTE, SINGLE_QUOTE = 34, 39
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def code_points(text: str) -> np.ndarray:
    """The text's code points as int64 (one per character)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(
        np.int64
    )


def _char_class(points: np.ndarray, predicate: Callable[[str], bool]) -> np.ndarray:
    """``predicate(chr(p))`` for every code point, evaluated once per distinct character."""
    if not len(points):
        return np.zeros(0, dtype=bool)
    distinct, inverse = np.unique(points, return_inverse=True)
    table = np.fromiter((predicate(chr(int(p))) for p in distinct), dtype=bool, count=len(distinct))
    return table[inverse.reshape(-1)]


def _previous_newline(points: np.ndarray) -> np.ndarray:
    """Index of the last newline strictly before each character (-1 if none)."""
    n = len(points)
    marks = np.where(points == NEWLINE, np.arange(n), -1)
    last = np.maximum.accumulate(marks) if n else marks
    return np.concatenate(([-1], last[:-1])) if n else last


def _is_word(points: np.ndarray) -> np.ndarray:
    return _char_class(points, lambda ch: ch.isalnum() or ch == "_")


def _depth(points: np.ndarray, opening: int, closing: int) -> np.ndarray:
    """Nesting depth after each character, a closer without an opener ignored (floor at 0)."""
    steps = (points == opening).astype(np.int64) - (points == closing)
    total = np.cumsum(steps)
    if not len(total):
        return total.astype(np.float32)
    # a +-1 walk held at zero is the walk minus its running minimum (when that is negative)
    floor = np.minimum(np.minimum.accumulate(total), 0)
    return (total - floor).astype(np.float32)


# --------------------------------------------------------------------------- built-in features
def line_position(text: str) -> np.ndarray:
    """Column of the character in its line: characters since the previous newline (0 first)."""
    points = code_points(text)
    return (np.arange(len(points)) - _previous_newline(points) - 1).astype(np.float32)


def in_double_quotes(text: str) -> np.ndarray:
    """1 where an odd number of '"' have been read up to and including this character."""
    points = code_points(text)
    return (np.cumsum(points == DOUBLE_QUOTE) % 2).astype(np.float32)


def in_single_quotes(text: str) -> np.ndarray:
    """1 where an odd number of quote marks "'" precede or are this character in its line; a "'" between two letters or digits (an apostrophe: don't, it's) is not a quote mark."""
    points = code_points(text)
    n = len(points)
    word = _is_word(points) & (points != ord("_"))
    apostrophe = np.zeros(n, dtype=bool)
    if n > 2:
        apostrophe[1:-1] = word[:-2] & word[2:]
    marks = ((points == SINGLE_QUOTE) & ~apostrophe).astype(np.int64)
    counted = np.cumsum(marks)
    # counts restart at each line: subtract the count at the previous newline
    before = _previous_newline(points)
    base = np.where(before >= 0, counted[np.maximum(before, 0)], 0) if n else counted
    return ((counted - base) % 2).astype(np.float32)


def round_depth(text: str) -> np.ndarray:
    """Depth of round brackets '(' ')' after this character; a ')' with no open '(' is ignored."""
    return _depth(code_points(text), ord("("), ord(")"))


def square_depth(text: str) -> np.ndarray:
    """Depth of square brackets '[' ']' after this character; a ']' with no open '[' is ignored."""
    return _depth(code_points(text), ord("["), ord("]"))


def curly_depth(text: str) -> np.ndarray:
    """Depth of curly brackets '{' '}' after this character; a '}' with no open '{' is ignored."""
    return _depth(code_points(text), ord("{"), ord("}"))


def word_start(text: str) -> np.ndarray:
    """1 for a letter, digit or '_' whose previous character is none of these (or that opens the text)."""
    word = _is_word(code_points(text))
    previous = np.concatenate(([False], word[:-1])) if len(word) else word
    return (word & ~previous).astype(np.float32)


def after_newline(text: str) -> np.ndarray:
    """1 for the first character of each line: the text's first and every one after a newline."""
    return (_previous_newline(code_points(text)) == np.arange(len(text)) - 1).astype(np.float32)


def digit(text: str) -> np.ndarray:
    """1 for the ASCII digits 0-9."""
    points = code_points(text)
    return ((points >= ord("0")) & (points <= ord("9"))).astype(np.float32)


def upper_case(text: str) -> np.ndarray:
    """1 for an upper-case letter (str.isupper)."""
    return _char_class(code_points(text), str.isupper).astype(np.float32)


def indentation(text: str) -> np.ndarray:
    """Spaces and tabs (one each) that begin the character's line, counted up to this character."""
    points = code_points(text)
    n = len(points)
    if not n:
        return np.zeros(0, dtype=np.float32)
    blank = (points == SPACE) | (points == TAB)
    before = _previous_newline(points)
    at = np.maximum(before, 0)
    solid = np.cumsum(~blank)  # characters other than spaces and tabs, up to each one
    solid_in_line = solid - np.where(before >= 0, solid[at], 0)
    leading = (blank & (solid_in_line == 0)).astype(np.int64)
    counted = np.cumsum(leading)
    return (counted - np.where(before >= 0, counted[at], 0)).astype(np.float32)


BUILTIN: dict[str, Callable[[str], np.ndarray]] = {
    "line_position": line_position,
    "in_double_quotes": in_double_quotes,
    "in_single_quotes": in_single_quotes,
    "round_depth": round_depth,
    "square_depth": square_depth,
    "curly_depth": curly_depth,
    "word_start": word_start,
    "after_newline": after_newline,
    "digit": digit,
    "upper_case": upper_case,
    "indentation": indentation,
}

LABELS = {
    "line_position": "position in the line",
    "in_double_quotes": "inside double quotes",
    "in_single_quotes": "inside single quotes",
    "round_depth": "( ) depth",
    "square_depth": "[ ] depth",
    "curly_depth": "{ } depth",
    "word_start": "start of a word",
    "after_newline": "first character of a line",
    "digit": "digit",
    "upper_case": "upper case",
    "indentation": "indentation",
}


def definition(name: str) -> str:
    """The one-line definition of a built-in feature (its docstring)."""
    doc = BUILTIN[name].__doc__ or ""
    return doc.strip().splitlines()[0]


# --------------------------------------------------------------------------- user features
def parse_feature(spec: str) -> tuple[str, re.Pattern[str]]:
    """``NAME=REGEX`` -> (name, compiled pattern); ConfigError naming what is wrong."""
    name, sep, pattern = spec.partition("=")
    if not sep:
        raise ConfigError(f"--feature {spec!r}: write NAME=REGEX, e.g. --feature vowel=[aeiou]")
    if not FEATURE_NAME.fullmatch(name):
        raise ConfigError(
            f"--feature {spec!r}: a name is a letter or '_' then up to 63 letters, digits, '_', "
            "'.' or '-'"
        )
    if name in BUILTIN:
        raise ConfigError(f"--feature {name}: that is the name of a built-in feature")
    if not pattern:
        raise ConfigError(f"--feature {name}: the regular expression is empty")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--feature {name}: bad regular expression {pattern!r}: {exc}") from None
    return name, compiled


def regex_feature(text: str, pattern: re.Pattern[str]) -> np.ndarray:
    """1 for the characters inside a match of ``pattern`` (re.finditer), 0 elsewhere."""
    delta = np.zeros(len(text) + 1, dtype=np.int64)
    starts, ends = [], []
    for match in pattern.finditer(text):
        if match.end() > match.start():
            starts.append(match.start())
            ends.append(match.end())
    np.add.at(delta, np.asarray(starts, dtype=np.int64), 1)
    np.add.at(delta, np.asarray(ends, dtype=np.int64), -1)
    return (np.cumsum(delta[:-1]) > 0).astype(np.float32)


def text_features(
    text: str, user: list[tuple[str, re.Pattern[str]]] | None = None
) -> dict[str, np.ndarray]:
    """Every built-in feature, then the user's, in order: name -> float32 array (len(text),)."""
    out = {name: func(text) for name, func in BUILTIN.items()}
    seen = set(out)
    for name, pattern in user or []:
        if name in seen:
            raise ConfigError(f"--feature {name}: given twice")
        seen.add(name)
        out[name] = regex_feature(text, pattern)
    return out
