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


# --------------------------------------------------------------------------- generate in NumPy
# A plain request on an LSTM/GRU run (temperature alone, no stop strings, beams, novelty or
# clamps) is answered without torch (lite.py): the same text as the torch engine's.
PLAIN = [
    ["--length", "300", "--seed", "5"],
    ["--length", "200", "--seed", "7", "--temperature", "0.5", "1.2", "--num-samples", "2"],
    ["--length", "120", "--seed", "3", "--temperature", "0", "--prompt", "the cat"],
    ["--length", "150", "--seed", "9", "--format", "lines", "--prompt", "a dog\\n"],
    [
        "--length",
        "100",
        "--seed",
        "2",
        "--weights",
        "last",
        "--unknown",
        "drop",
        "--prompt",
        "the Q!",
    ],
]


def _generate(run: object, argv: list[str], code_after: str = "") -> tuple[str, set[str]]:
    """stdout of ``chargen generate RUN ARGV`` in a fresh interpreter, and its modules."""
    code = (
        "import contextlib, io\n"
        "from chargen.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    assert main(['generate', {str(run)!r}, *{argv!r}]) == 0\n"
        "print('OUT', repr(out.getvalue()))\n" + code_after
    )
    probe = (
        f"import sys\n{code}\nprint('MODULES', *sorted({{m.split('.')[0] for m in sys.modules}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    (out,) = [x for x in lines if x.startswith("OUT ")]
    (mods,) = [x for x in lines if x.startswith("MODULES ")]
    import ast

    return ast.literal_eval(out[4:]), set(mods.split()[1:])


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_generate_needs_no_torch_and_equals_the_torch_engine(trained_run, argv) -> None:
    text, modules = _generate(trained_run, argv)
    assert "torch" not in modules
    same, modules = _generate(trained_run, [*argv, "--engine", "torch"])
    assert "torch" in modules
    assert text == same and text


@pytest.mark.parametrize(
    "extra", [["--top-k", "5"], ["--stop", "."], ["--clamp", "0:cell:0=1"], ["--beams", "2"]]
)
def test_anything_more_goes_the_torch_way(trained_run, extra) -> None:
    _, modules = _generate(trained_run, ["--length", "20", "--seed", "1", *extra])
    assert "torch" in modules


def test_a_damaged_run_goes_the_torch_way_and_its_error(trained_run, tmp_path) -> None:
    """Anything unexpected in the folder: the torch path loads it and names the problem."""
    import shutil

    from tests.conftest import run_chargen

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "best.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    done = run_chargen("generate", str(copy), "--length", "5", "--seed", "1")
    assert done.returncode == 2 and done.stdout == ""
    assert "best.safetensors" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_fifo_for_weights_is_refused_not_waited_on(trained_run, tmp_path) -> None:
    import os
    import shutil

    from tests.conftest import run_chargen

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "best.safetensors").unlink()
    os.mkfifo(copy / "best.safetensors")
    done = run_chargen("generate", str(copy), "--length", "5", "--seed", "1", timeout=60)
    assert done.returncode == 2 and "cannot read a FIFO" in done.stderr
