"""Ctrl-C / SIGTERM during training: the step finishes, a checkpoint is written, exit 130 / 143."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargen import checkpoint as ckpt
from tests.conftest import make_text, run_chargen


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_resume_continues(tmp_path: Path, signum: int, code: int) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20_000), encoding="utf-8")
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "chargen",
        "train",
        str(corpus),
        "--out",
        str(run),
        "--steps",
        "100000",
        "--hidden-size",
        "32",
        "--embed-dim",
        "8",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--checkpoint-every",
        "5",
        "--eval-every",
        "1000",
        "--threads",
        "1",
        "--sample-length",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / ckpt.TRAINER).exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "--resume" in err and "Traceback" not in err
    saved = ckpt.load_trainer_state(run).meta["step"]
    assert saved > 0
    resumed = run_chargen(
        "train", "--out", str(run), "--resume", "--steps", str(saved + 5), timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert ckpt.load_trainer_state(run).meta["step"] == saved + 5
