"""The bad-input matrix: each case is one clear line on stderr, exit status 2, nothing on disk changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chargen.cli import main
from tests.conftest import TINY_FLAGS, make_text

QUICK = ["--steps", "3", *TINY_FLAGS]


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path below ``folder`` with its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def _setup(tmp: Path) -> dict[str, str]:
    """Files and folders the cases refer to, by name."""
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "blank.txt").write_bytes(b" \n\t \r\n  ")
    (tmp / "binary.bin").write_bytes(b"\x7fELF\x00\x00\x01" * 100)
    (tmp / "latin.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 100)
    (tmp / "tiny.txt").write_text("abcdefgh\n", encoding="utf-8")
    (tmp / "short.txt").write_text("the cat sat on the mat. " * 3, encoding="utf-8")
    (tmp / "one.txt").write_text("x" * 5000, encoding="utf-8")
    (tmp / "good.txt").write_text(make_text(4000), encoding="utf-8")
    (tmp / "nodocs").mkdir()
    (tmp / "nodocs" / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp / "a-file").write_text("not a folder\n", encoding="utf-8")
    return {name: str(tmp / name) for name in os.listdir(tmp)}


def _fill(arg: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


CASES = [
    ("missing path", ["train", "{tmp}/nope.txt", "--out", "{tmp}/run", *QUICK], "no such file"),
    ("folder with no text", ["train", "{nodocs}", "--out", "{tmp}/run", *QUICK], "no text files"),
    ("empty file", ["train", "{empty.txt}", "--out", "{tmp}/run", *QUICK], "empty"),
    ("whitespace only", ["train", "{blank.txt}", "--out", "{tmp}/run", *QUICK], "whitespace"),
    ("binary file", ["train", "{binary.bin}", "--out", "{tmp}/run", *QUICK], "binary"),
    ("invalid utf-8", ["train", "{latin.txt}", "--out", "{tmp}/run", *QUICK], "--encoding latin-1"),
    (
        "unknown encoding",
        ["train", "{latin.txt}", "--encoding", "klingon", "--out", "{tmp}/run", *QUICK],
        "klingon",
    ),
    ("shorter than a sequence", ["train", "{short.txt}", "--out", "{tmp}/run", *QUICK], "too few"),
    ("too short to split", ["train", "{tiny.txt}", "--out", "{tmp}/run", *QUICK], "validation"),
    (
        "one-symbol vocabulary",
        ["train", "{one.txt}", "--out", "{tmp}/run", *QUICK],
        "vocabulary of 1",
    ),
    ("unwritable output", ["train", "{good.txt}", "--out", "{a-file}/run", *QUICK], "cannot write"),
    ("existing run", ["train", "{good.txt}", "--out", "{run}", *QUICK], "--overwrite"),
    (
        "resume without run",
        ["train", "{good.txt}", "--out", "{tmp}/run", "--resume"],
        "nothing to resume",
    ),
    (
        "resume changing the model",
        ["train", "--out", "{run}", "--resume", "--hidden-size", "9"],
        "--hidden-size",
    ),
    ("bad preset", ["train", "{good.txt}", "--out", "{tmp}/run", "--preset", "huge"], "preset"),
    (
        "two budgets",
        ["train", "{good.txt}", "--out", "{tmp}/run", "--steps", "1", "--epochs", "1"],
        "not allowed",
    ),
    ("negative lr", ["train", "{good.txt}", "--out", "{tmp}/run", "--lr", "-0.1"], "--lr"),
    ("dropout 1", ["train", "{good.txt}", "--out", "{tmp}/run", "--dropout", "1"], "--dropout"),
    ("zero layers", ["train", "{good.txt}", "--out", "{tmp}/run", "--layers", "0"], "--layers"),
    ("prompt all unknown", ["generate", "{run}", "--prompt", "☃☃☃"], "vocabulary"),
    (
        "prompt unknown, error policy",
        ["generate", "{run}", "--prompt", "the ☃", "--unknown", "error"],
        "☃",
    ),
    ("temperature < 0", ["generate", "{run}", "--temperature", "-0.5"], "--temperature"),
    ("temperature nan", ["generate", "{run}", "--temperature", "nan"], "--temperature"),
    ("temperature inf", ["generate", "{run}", "--temperature", "inf"], "--temperature"),
    ("top-k 0", ["generate", "{run}", "--top-k", "0"], "--top-k"),
    ("top-p 0", ["generate", "{run}", "--top-p", "0"], "--top-p"),
    ("top-p > 1", ["generate", "{run}", "--top-p", "1.01"], "--top-p"),
    ("min-p < 0", ["generate", "{run}", "--min-p", "-0.1"], "--min-p"),
    ("min-p > 1", ["generate", "{run}", "--min-p", "1.1"], "--min-p"),
    ("typical-p 0", ["generate", "{run}", "--typical-p", "0"], "--typical-p"),
    (
        "repetition penalty 0",
        ["generate", "{run}", "--repetition-penalty", "0"],
        "--repetition-penalty",
    ),
    ("penalty window 0", ["generate", "{run}", "--penalty-window", "0"], "--penalty-window"),
    ("n-gram size < 0", ["generate", "{run}", "--no-repeat-ngram-size", "-2"], "--no-repeat-ngram"),
    ("length < 0", ["generate", "{run}", "--length", "-1"], "--length"),
    ("length above the cap", ["generate", "{run}", "--length", "1000001"], "--length"),
    ("num samples 0", ["generate", "{run}", "--num-samples", "0"], "--num-samples"),
    ("beams 0", ["generate", "{run}", "--beams", "0"], "--beams"),
    ("length not a number", ["generate", "{run}", "--length", "ten"], "--length"),
    ("generate from nothing", ["generate", "{tmp}/nope"], "nope"),
    ("eval from nothing", ["eval", "{tmp}/nope"], "nope"),
    ("inspect bad temperature", ["inspect", "{run}", "--temperature", "-1"], "--temperature"),
    ("score missing file", ["score", "{run}", "{tmp}/nope.txt"], "nope.txt"),
    (
        "plot to a missing folder",
        ["inspect", "{run}", "--plot", "{tmp}/no/such/dir/x.png"],
        "x.png",
    ),
]


@pytest.mark.parametrize("name, argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    name: str,
    argv: list[str],
    needle: str,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = _setup(tmp_path)
    names = {"tmp": str(tmp_path), "run": str(trained_run), **paths}
    filled = [_fill(a, names) for a in argv]
    before_tmp, before_run = _tree(tmp_path), _tree(trained_run)
    code = main(filled)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("chargen: error:"), err
    assert needle in lines[0], lines[0]
    assert _tree(tmp_path) == before_tmp
    assert _tree(trained_run) == before_run


def test_a_20000_symbol_cjk_vocabulary_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "".join(chr(0x4E00 + i) for i in range(20_000)) + "\n"
    (tmp_path / "cjk.txt").write_text(text * 3, encoding="utf-8")
    code = main(
        [
            "train",
            str(tmp_path / "cjk.txt"),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "2",
            "--hidden-size",
            "16",
            "--embed-dim",
            "8",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--sample-length",
            "5",
            "--threads",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert main(["generate", str(tmp_path / "run"), "--prompt", "丁", "--length", "5"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 5


def test_read_only_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip(
            "root ignores folder permissions; the unwritable case above uses a file as parent"
        )
    (tmp_path / "good.txt").write_text(make_text(4000), encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code = main(["train", str(tmp_path / "good.txt"), "--out", str(locked / "run"), *QUICK])
    assert code == 2 and "cannot write" in capsys.readouterr().err
