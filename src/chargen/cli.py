"""The ``chargen`` command: a thin face over the Python API.

Every user error ends as one line on stderr and exit status 2; SIGINT / SIGTERM during
training end with 130 / 143 after a checkpoint.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

from chargen.cli_parser import build_parser
from chargen.errors import ChargenError

__all__ = ["build_parser", "main", "run"]


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
