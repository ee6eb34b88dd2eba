"""The command line: the main paths work, and every user error is one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chargen.cli import main
from tests.conftest import make_text


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("chargen: error:"), err
    assert "Traceback" not in err


def test_train_generate_eval(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "generate", trained_run, "--prompt", "the ", "--length", "50", "--seed", "1"
    )
    assert code == 0 and out.startswith("the ") and len(out.rstrip("\n")) == 54
    code, out2, _ = run_cli(
        capsys, "generate", trained_run, "--prompt", "the ", "--length", "50", "--seed", "1"
    )
    assert out2 == out
    code, out, _ = run_cli(
        capsys,
        "generate",
        trained_run,
        "--prompt",
        "a",
        "--length",
        "30",
        "--temperature",
        "0.2",
        "0.5",
        "1.0",
        "1.2",
    )
    assert code == 0 and out.count("------ temperature:") == 4
    code, out, _ = run_cli(capsys, "eval", trained_run, "--json")
    result = json.loads(out)
    assert code == 0 and set(result) >= {"nats_per_char", "bits_per_char", "chars"}
    assert result["bits_per_char"] == pytest.approx(result["nats_per_char"] / 0.6931471805599453)


def test_generate_jsonl(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "generate", trained_run, "--prompt", "the", "--length", "10", "--format", "jsonl"
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 10
    assert all(r["logprob"] <= 0 and r["entropy"] >= 0 for r in rows)


def test_eval_on_another_file(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.txt"
    other.write_text(make_text(3000, seed=5), encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", trained_run, other, "--all", "--json")
    assert code == 0 and json.loads(out)["chars"] > 2500


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "{run}", "--temperature", "-1"],
        ["generate", "{run}", "--temperature", "nan"],
        ["generate", "{run}", "--length", "-5"],
        ["generate", "{run}", "--top-p", "1.5"],
        ["generate", "{run}", "--top-k", "0"],
        ["generate", "{run}", "--beams", "0"],
        ["generate", "{run}", "--min-p", "1.5"],
        ["generate", "{run}", "--length", "2000000"],
        ["inspect", "{run}", "--temperature", "-0.5"],
        ["score", "{run}", "{tmp}/missing.txt"],
        ["generate", "{run}", "--prompt", "☃☃", "--unknown", "error"],
        ["generate", "{tmp}/missing-run"],
        ["train", "{tmp}/missing.txt", "--out", "{tmp}/r"],
        ["train", "{corpus}", "--out", "{run}"],
        ["train", "{corpus}", "--out", "{tmp}/nothing", "--resume"],
        ["train", "{corpus}", "--out", "{tmp}/r", "--lr", "-1"],
        ["train", "{corpus}", "--out", "{tmp}/r", "--preset", "nope"],
        ["train", "{corpus}", "--out", "{tmp}/r", "--steps", "3", "--minutes", "1"],
        ["train", "no-such-corpus-name", "--out", "{tmp}/r"],
        ["eval", "{tmp}/missing-run"],
        ["serve", "{run}", "--port", "0"],
        ["serve", "{tmp}/missing-run"],
        ["plot", "{tmp}/missing-run", "--out", "{tmp}/c.png"],
        ["frobnicate"],
    ],
)
def test_user_errors_are_one_line_exit_2(
    args: list[str], trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    before = sorted(p.name for p in trained_run.iterdir())
    filled = [a.format(run=trained_run, tmp=tmp_path, corpus=corpus) for a in args]
    code, _, err = run_cli(capsys, *filled)
    one_line_error(code, err)
    assert sorted(p.name for p in trained_run.iterdir()) == before
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"   \n\t  \n", "whitespace"),
        (b"abc\x00\x01\x02def" * 10, "binary"),
        (b"caf\xe9 au lait " * 50, "offset"),
    ],
)
def test_bad_corpora(
    content: bytes, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    code, _, err = run_cli(capsys, "train", path, "--out", tmp_path / "r", "--steps", "2")
    one_line_error(code, err)
    assert match in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_invalid_utf8_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait " * 50)
    code, _, err = run_cli(capsys, "train", path, "--out", tmp_path / "r", "--steps", "2")
    assert "latin.txt" in err and "--encoding latin-1" in err


def test_corrupt_weights_one_line(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    data = (copy / "best.safetensors").read_bytes()
    (copy / "best.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "generate", copy, "--length", "5")
    one_line_error(code, err)
    assert "best.safetensors" in err


def test_plot_draws_the_curves(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run_cli(capsys, "plot", trained_run, "--out", tmp_path / "curves.png")
    assert code == 0 and (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corpora_lists_all(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "corpora")
    assert code == 0
    for name in ("python-docs", "python-stdlib", "nietzsche", "tinyshakespeare"):
        assert name in out


def test_demo_runs_offline(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargen",
            "demo",
            "--minutes",
            "0.08",
            "--out",
            str(tmp_path / "demo"),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("------ temperature:") >= 4
    assert "validation loss" in proc.stdout


def test_readme_and_ci_run_the_same_test_command() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    ci = (root / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in readme
    assert "chargen demo" in "\n".join(readme.splitlines()[:12])
