"""No lost work: kill -9, crashes and a full disk mid-checkpoint, NaN losses, damaged run folders."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import chargen
from chargen import atomic
from chargen import checkpoint as ckpt
from chargen.cli import main
from chargen.errors import CheckpointError, TrainingError
from tests.conftest import TINY, make_text, run_chargen

TRAIN_FLAGS = [
    "--steps",
    "60",
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
    "20",
    "--threads",
    "1",
    "--sample-length",
    "0",
    "--dropout",
    "0.1",
]


def _train_cmd(corpus: Path, run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "chargen",
        "train",
        str(corpus),
        "--out",
        str(run),
        *TRAIN_FLAGS,
        *extra,
    ]


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(30_000), encoding="utf-8")
    subprocess.run(
        _train_cmd(corpus, tmp_path / "full"), check=True, capture_output=True, timeout=300
    )

    run = tmp_path / "killed"
    # the same command in a process whose steps each take 20 ms longer (patched here, in the
    # test), so the kill lands mid-run whatever the machine's speed
    slow = (
        "import importlib, sys, time\n"
        'train = importlib.import_module("chargen.training"); real = train.Trainer.train_step\n'
        "def slow(self, *a):\n    time.sleep(0.02)\n    return real(self, *a)\n"
        "train.Trainer.train_step = slow\n"
        "from chargen.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", slow, *_train_cmd(corpus, run)[3:]]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / ckpt.TRAINER).exists():
            try:
                if ckpt.load_trainer_state(run).meta["step"] >= 20:
                    break
            except CheckpointError:
                pass  # caught between writes: try again
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = ckpt.load_trainer_state(run).meta["step"]
    assert 20 <= killed_at < 60
    resumed = run_chargen("train", str(corpus), "--out", str(run), "--resume", "--threads", "1")
    assert resumed.returncode == 0, resumed.stderr
    full = load_file(tmp_path / "full" / "model.safetensors")
    again = load_file(run / "model.safetensors")
    for key in full:
        assert np.array_equal(full[key], again[key]), key
    assert not list(run.glob(".*.tmp"))


def _trained(tmp_path: Path, steps: int = 10) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    run = tmp_path / "run"
    chargen.train(str(corpus), run, steps=steps, **TINY)
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("failure", ["crash", "enospc"])
def test_failure_while_writing_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    run = _trained(tmp_path)
    before = _snapshot(run)
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes half of what it is given, then fails as a crash or a full disk would."""

        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            if failure == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device")
            raise KeyboardInterrupt  # an abrupt stop in the middle of the write

        def flush(self) -> None: ...

        def fileno(self) -> int:
            return self.handle.fileno()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    expected = CheckpointError if failure == "enospc" else KeyboardInterrupt
    with pytest.raises(expected) as info:
        chargen.train("unused", run, steps=20, resume=True)
    if failure == "enospc":
        assert "No space left" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setattr(atomic.os, "fdopen", real_fdopen)
    after = _snapshot(run)
    for name in (ckpt.TRAINER, ckpt.WEIGHTS, ckpt.CONFIG, ckpt.TOKENIZER):
        assert after[name] == before[name], name
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    ckpt.load_run(run)
    assert ckpt.load_trainer_state(run).meta["step"] == 10


def test_a_partial_temporary_is_never_what_loads(tmp_path: Path) -> None:
    run = _trained(tmp_path)
    good = (run / ckpt.TRAINER).read_bytes()
    (run / f".{ckpt.TRAINER}.abc123.tmp").write_bytes(good[: len(good) // 3])
    assert ckpt.load_trainer_state(run).meta["step"] == 10
    chargen.train("unused", run, steps=12, resume=True)
    assert not list(run.glob(".*.tmp"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _trained(tmp_path, steps=10)
    good = _snapshot(run)
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)
    with pytest.raises(TrainingError, match="step 14") as info:
        chargen.train("unused", run, steps=30, resume=True)
    assert "last good checkpoint" in str(info.value)
    weights = load_file(run / ckpt.WEIGHTS)
    assert all(np.isfinite(v).all() for v in weights.values())
    assert ckpt.load_trainer_state(run).meta["step"] in (10, 13) or good


def test_nan_loss_can_skip_the_batch_and_lower_the_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("inf") if calls["n"] == 5 else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    result = chargen.train(
        str(corpus), tmp_path / "run", preset="medium", steps=20, on_nan="skip", **TINY
    )  # a named preset: auto's speed probe would take one of the counted cross_entropy calls
    meta = ckpt.load_trainer_state(tmp_path / "run").meta
    assert result.step == 20 and meta["nan_skips"] == 1 and meta["lr_scale"] == 0.5
    weights = load_file(tmp_path / "run" / ckpt.WEIGHTS)
    assert all(np.isfinite(v).all() for v in weights.values())


@pytest.mark.parametrize(
    "damage, names",
    [
        ("truncate-weights", "best.safetensors"),
        ("garbage-weights", "best.safetensors"),
        ("pickle-weights", "best.safetensors"),
        ("foreign-config", "config.json"),
        ("future-config", "config.json"),
        ("corrupt-tokenizer", "tokenizer.json"),
        ("other-tokenizer", "tokenizer.json"),
    ],
)
def test_damaged_run_folders_give_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, names: str
) -> None:
    run = _trained(tmp_path)
    marker = tmp_path / "pwned"
    target = run / names
    if damage == "truncate-weights":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "garbage-weights":
        target.write_bytes(os.urandom(4096))
    elif damage == "pickle-weights":
        import pickle

        class Exploit:
            def __reduce__(self):
                return (Path.touch, (marker,))

        target.write_bytes(pickle.dumps(Exploit()))
    elif damage == "foreign-config":
        target.write_text(json.dumps({"model_type": "gpt2", "n_layer": 12}))
    elif damage == "future-config":
        data = json.loads(target.read_text())
        data["version"] = 2
        target.write_text(json.dumps(data))
    elif damage == "corrupt-tokenizer":
        target.write_text(
            '{"format": "chargen-tokenizer", "version": 1, "kind": "char", "vocab": ['
        )
    elif damage == "other-tokenizer":
        data = json.loads(target.read_text())
        data["vocab"] = data["vocab"] + ["\u2603"]
        target.write_text(json.dumps(data))
    before = _snapshot(run)
    for command in (["generate", str(run), "--length", "5"], ["eval", str(run)]):
        code = main(command)
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and names in lines[0], err
    assert _snapshot(run) == before
    assert not marker.exists()


def test_corrupt_trainer_state_refuses_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _trained(tmp_path)
    data = (run / ckpt.TRAINER).read_bytes()
    (run / ckpt.TRAINER).write_bytes(data[: len(data) - 1000])
    before = _snapshot(run)
    code = main(["train", "--out", str(run), "--resume", "--steps", "20"])
    err = capsys.readouterr().err
    assert code == 2 and ckpt.TRAINER in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_copying_a_run_elsewhere_still_loads(tmp_path: Path) -> None:
    run = _trained(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert chargen.load(copy).generate("the ", 10, 0.0) == chargen.load(run).generate(
        "the ", 10, 0.0
    )
