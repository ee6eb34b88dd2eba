"""A configuration field described once: its default, its one-line help and its CLI flag live
together in the dataclass (``dataclasses.field`` metadata); the command line, ``docs/flags.md``
and the server's request models read them from there."""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str, *, flag: str | None = None, cli: bool = True) -> Any:
    """A dataclass field with ``default``, its ``help`` line and its flag (default ``--x-y`` for
    field ``x_y``); ``cli=False``: set by a command's own arguments, not by a flag of its own."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "cli": cli})


def flag_name(field: dataclasses.Field[Any]) -> str:
    """The CLI flag that sets ``field``."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def help_of(field: dataclasses.Field[Any]) -> str | None:
    """The one-line help of ``field`` (None for a field without one)."""
    return field.metadata.get("help")


def is_flag(field: dataclasses.Field[Any]) -> bool:
    """Whether ``field`` is set by a flag of its own (not by a positional or a budget flag)."""
    return bool(field.metadata.get("cli", True))
