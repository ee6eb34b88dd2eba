"""The command line starts without torch where it does not need it (``import torch`` alone takes
1.6-2 s on 2 cores): ``import chargen`` and ``chargen --help`` / ``chargen train --help``."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    """The top-level modules imported in a fresh interpreter after running ``code``."""
    probe = (
        f"import sys\n{code}\nprint('MODULES', *sorted({{m.split('.')[0] for m in sys.modules}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("MODULES ")]  # not the help
    return set(line.split()[1:])


def test_import_chargen_does_not_import_torch() -> None:
    assert "torch" not in modules_after("import chargen")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["generate", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code = (
        "from chargen.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    assert "torch" not in modules_after(code)


def test_the_lazy_names_are_the_api() -> None:
    code = (
        "import chargen, chargen.api, chargen.sampling\n"
        "assert chargen.train is chargen.api.train and chargen.load is chargen.api.load\n"
        "assert chargen.SamplingConfig is chargen.sampling.SamplingConfig\n"
        "try:\n"
        "    chargen.nothing\n"
        "except AttributeError as exc:\n"
        "    assert 'nothing' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    assert "torch" in modules_after(code)  # asked for: imported
