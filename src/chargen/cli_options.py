"""Building blocks of the ``chargen`` parser and of the commands that read it: the one-line
usage-error parser, one flag per configuration field (``add_config_flags``) and the fields a
user set (``given_fields``), the flag of a field (``_flag``), the training budget flags and the
``--encoding/--errors/--lowercase`` flags of a text that is not a run's own corpus.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, NoReturn

from chargen.fields import flag_name, help_of, is_flag


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"chargen: error: {message} (see: {self.prog} --help)\n")


def _flag(name: str) -> str:
    """The flag that sets configuration field ``name`` (its metadata says, ``fields.py``)."""
    from chargen.config import DataConfig, ModelConfig, TrainConfig

    for cls in (ModelConfig, TrainConfig, DataConfig):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return flag_name(f)
    return "--" + name.replace("_", "-")


def _scalar_type(hint: Any) -> tuple[Any, bool]:
    """(element type, is_sequence) of a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _scalar_type(args[0])
    if origin is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, title: str, skip: frozenset[str] = frozenset()
) -> None:
    """One flag per field of dataclass ``cls``; every default is None ("not given")."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not is_flag(f) or f.name in skip:
            continue
        kind, many = _scalar_type(hints[f.name])
        text = help_of(f)
        options: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": text.replace("%", "%%") if text else None,
        }
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options.update(type=kind, metavar="X" if many else f.name.upper())
            if many:  # --x a b and --x a --x b alike
                options.update(nargs="+", action="extend")
        group.add_argument(flag_name(f), **options)


def given_fields(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` the user set on the command line."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None and is_flag(f):
            out[f.name] = tuple(value) if isinstance(value, list) else value
    return out


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k: getattr(args, k) for k in ("steps", "epochs", "minutes") if getattr(args, k) is not None
    }


def _add_budget(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--epochs", type=float, help="train for E passes over the training split")
    group.add_argument("--steps", type=int, help="train for S optimizer steps")
    group.add_argument("--minutes", type=float, help="train for M minutes of wall time")


def _add_decoding_flags(p: argparse.ArgumentParser, encoding_default: str = "utf-8") -> None:
    """--encoding, --errors and --lowercase for a text that is not the run's own corpus."""
    p.add_argument("--encoding", help=f"text encoding (default {encoding_default})")
    p.add_argument(
        "--errors",
        choices=("strict", "replace", "ignore"),
        help="undecodable bytes (default: the run's policy, strict unless trained otherwise)",
    )
    p.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="lower-case the text (default: as the run's training text was)",
    )


def text_argument(args: argparse.Namespace, config: Any) -> str:
    """The FILE argument of ``score``, ``novelty`` and ``neurons`` (stdin for ``-``), decoded
    as the run's corpus was unless ``--encoding`` / ``--errors`` / ``--lowercase`` say
    otherwise (``run_text.load_text``)."""
    import sys

    from chargen.run_text import load_text

    return load_text(
        args.file,
        config.data,
        lambda: sys.stdin.buffer.read(),
        encoding=args.encoding,
        errors=args.errors,
        lowercase=args.lowercase,
    )
