"""The ``chargen`` command: a thin face over the Python API.

Every user error ends as one line on stderr and exit status 2; SIGINT / SIGTERM during
training end with 130 / 143 after a checkpoint.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

from chargen import __version__
from chargen.cli_data import cmd_corpora, cmd_prepare
from chargen.cli_eval import cmd_eval, cmd_score
from chargen.cli_export import add_export_parser
from chargen.cli_generate import cmd_generate
from chargen.cli_inspect import (
    NOVELTY_SNIPPET,
    _copy_line,
    _novelty_text,
    cmd_inspect,
    cmd_neurons,
    cmd_novelty,
)
from chargen.cli_options import (
    _add_budget,
    _add_decoding_flags,
    _budget,
    _flag,
    _Parser,
    _scalar_type,
    add_config_flags,
    given_fields,
)
from chargen.cli_parser import build_parser
from chargen.cli_serve import cmd_serve
from chargen.cli_train import cmd_demo, cmd_plot, cmd_train
from chargen.errors import ChargenError, ConfigError

# the names of the one-file cli.py, kept importable from here (tests, benchmarks, cli_generate)
__all__ = [
    "NOVELTY_SNIPPET",
    "ChargenError",
    "ConfigError",
    "__version__",
    "_Parser",
    "_add_budget",
    "_add_decoding_flags",
    "_budget",
    "_copy_line",
    "_flag",
    "_novelty_text",
    "_scalar_type",
    "add_config_flags",
    "add_export_parser",
    "build_parser",
    "cmd_corpora",
    "cmd_demo",
    "cmd_eval",
    "cmd_generate",
    "cmd_inspect",
    "cmd_neurons",
    "cmd_novelty",
    "cmd_plot",
    "cmd_prepare",
    "cmd_score",
    "cmd_serve",
    "cmd_train",
    "given_fields",
    "main",
    "run",
]


def _one_line_warnings(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    print(f"chargen: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    warnings.showwarning = _one_line_warnings
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (one line, status 2)
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except ChargenError as exc:
        print(f"chargen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chargen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
