r"""Backslash escapes in command-line text (``--prompt``, ``--stop``), and their inverse.

A shell passes ``"\n\n"`` as four characters; ``decode_escapes`` turns it into two newlines.
The escapes read are::

    \\          a backslash
    \n  \t  \r  newline, tab, carriage return
    \xHH        the character U+00HH (2 hex digits)
    \uHHHH      the character U+HHHH (4 hex digits); a surrogate pair \uD83D\uDE00 is one character
    \UHHHHHHHH  the character U+HHHHHHHH (8 hex digits, at most 10FFFF)

Anything else after a backslash (``\q``, ``\u12``, a lone surrogate, a backslash at the end)
is an ``EscapeError`` naming the flag and the 1-based position of the backslash: a typo is
reported, never guessed at. Text without a backslash comes back unchanged.
``encode_escapes`` is the inverse: ``decode_escapes(encode_escapes(s)) == s`` for every string
without lone surrogates (which no escape decodes to).
"""

from __future__ import annotations

from chargen.errors import ConfigError

HELP = (
    r"In prompts and stop strings a backslash starts an escape: \n newline, \t tab, \r "
    r"carriage return, \\ backslash, \xHH, \uHHHH, \UHHHHHHHH; any other backslash is an "
    r"error (exit 2) naming its position; --no-escapes takes the text literally."
)
SIMPLE = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_HEX = frozenset("0123456789abcdefABCDEF")


class EscapeError(ConfigError):
    """A backslash that starts no escape chargen reads (``position`` is 1-based)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def _shown(text: str) -> str:
    """``text`` as the user typed it (backslashes single), characters that do not print escaped."""
    return "".join(ch if ch.isprintable() else encode_escapes(ch) for ch in text)


def _fail(flag: str, text: str, position: int, why: str) -> EscapeError:
    where = f"{flag}: " if flag else ""
    start, end = max(0, position - 30), position + 30  # a window around the backslash
    shown = ("..." if start else "") + _shown(text[start:end]) + ("..." if end < len(text) else "")
    return EscapeError(
        f'{where}{why} at character {position + 1} of "{shown}"; escapes read: '
        r"\n \t \r \\ \xHH \uHHHH \UHHHHHHHH (write \\ for a backslash, or pass --no-escapes "
        "to take the text literally)",
        position + 1,
    )


def _hex_at(text: str, start: int, digits: int) -> int | None:
    chunk = text[start : start + digits]
    if len(chunk) != digits or not set(chunk) <= _HEX:
        return None
    return int(chunk, 16)


def decode_escapes(text: str, flag: str = "") -> str:
    """``text`` with its backslash escapes replaced; EscapeError (exit 2) on a bad one.

    ``flag`` (e.g. ``"--prompt"``) starts the error message.
    """
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 == len(text):
            raise _fail(flag, text, i, "a lone backslash")
        kind = text[i + 1]
        if kind in SIMPLE:
            out.append(SIMPLE[kind])
            i += 2
            continue
        if kind not in HEX_DIGITS:
            raise _fail(
                flag,
                text,
                i,
                f"unknown escape \\{kind}"
                if kind.isprintable()
                else f"unknown escape \\ + U+{ord(kind):04X}",
            )
        digits = HEX_DIGITS[kind]
        code = _hex_at(text, i + 2, digits)
        if code is None:
            raise _fail(flag, text, i, f"{text[i : i + 2]} needs {digits} hex digits")
        end = i + 2 + digits
        if 0xD800 <= code <= 0xDBFF and text[end : end + 2] == "\\u":  # a UTF-16 surrogate pair
            low = _hex_at(text, end + 2, 4)
            if low is not None and 0xDC00 <= low <= 0xDFFF:
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                end += 6
        if 0xD800 <= code <= 0xDFFF:
            raise _fail(flag, text, i, f"lone surrogate {text[i:end]} (not a character)")
        if code > 0x10FFFF:
            raise _fail(flag, text, i, f"{text[i:end]} (past U+10FFFF)")
        out.append(chr(code))
        i = end
    return "".join(out)


def encode_escapes(text: str) -> str:
    r"""The inverse of ``decode_escapes``: backslashes doubled, \n \t \r spelled, and any other
    character that does not print (controls, separators, format characters) as \xHH, \uHHHH
    or \UHHHHHHHH. Printable characters, space included, are kept as they are.
    """
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)
