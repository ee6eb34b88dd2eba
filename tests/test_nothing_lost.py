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
import safetensors.torch
import torch
from safetensors.numpy import load_file

import chargen
from chargen import atomic
from chargen import checkpoint as ckpt
from chargen.cli import main
from chargen.errors import CheckpointError, TrainingError
from tests.conftest import TINY, make_text, run_chargen

TRAIN_FLAGS = [
    "--preset",
    "medium",  # a named preset: auto's speed probe could choose differently in each process
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
    chargen.train(str(corpus), run, steps=steps, preset="medium", **TINY)
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


TIMING = ("elapsed", "chars_per_s")  # the only fields of metrics.jsonl that vary run to run


def _records(run: Path) -> list[dict]:
    """metrics.jsonl without its timing fields; every line must be one whole record."""
    lines = (run / ckpt.METRICS).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # a torn line fails here
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _content(data: bytes) -> tuple[dict[str, bytes], dict[str, str]]:
    """A safetensors file's tensors (as raw bytes) and metadata: what it holds, whatever the
    order of its metadata keys (safetensors writes them in a random order)."""
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    tensors = {k: v.numpy().tobytes() for k, v in safetensors.torch.load(data).items()}
    return tensors, header.get("__metadata__", {})


def _without_train_loss(records: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in r.items() if not (r["kind"] == "train" and k == "loss")} for r in records
    ]


def _record_writes(monkeypatch: pytest.MonkeyPatch, fail: tuple[int, str] | None = None) -> dict:
    """Spy on every atomic write the run makes through chargen.checkpoint: the bytes written,
    by file name. ``fail`` = (N, kind): the Nth write of trainer.safetensors writes half of
    its bytes into the temporary and then fails with a full disk or an abrupt stop."""
    writes: dict[str, list[bytes]] = {}
    trainer_writes = [0]
    real = ckpt.atomic_write_bytes

    def spy(path: Path, data: bytes) -> None:
        name = Path(path).name
        if name == ckpt.TRAINER:
            trainer_writes[0] += 1
            if fail is not None and trainer_writes[0] == fail[0]:

                def half_then_fail(handle) -> None:
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    if fail[1] == "enospc":
                        raise OSError(errno.ENOSPC, "No space left on device")
                    raise KeyboardInterrupt  # an abrupt stop in the middle of the write

                atomic.atomic_write_with(path, half_then_fail)
                raise AssertionError("the failing write returned")
        real(path, data)
        writes.setdefault(name, []).append(data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", spy)
    return writes


@pytest.mark.parametrize("failure", ["enospc", "crash"])
def test_a_failed_write_of_the_trainer_state_mid_run_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """30 steps, a checkpoint every 5, an evaluation every 10; the 4th write of
    trainer.safetensors (step 20, just after the step-20 evaluation was logged and the step-20
    weights written) fails half-way.

    Then: trainer.safetensors is the step-15 checkpoint byte for byte, model / best
    .safetensors are whole files the uninterrupted run also wrote, metrics.jsonl holds whole
    records of the same run up to step 20; the resume goes back to step 15, drops the records
    after it, and finishes with the weights, trainer state and metrics of the uninterrupted run.
    Would catch: a write that is not atomic (a torn trainer.safetensors), a temporary left
    behind, a resume that duplicates or loses metrics records, state restored from the wrong
    step, an error that is a traceback rather than one line.
    """
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    options = {
        **TINY,
        "preset": "medium",
        "steps": 30,
        "checkpoint_every": 5,
        "eval_every": 10,
        "dropout": 0.1,  # the RNG state must come back too
        "sample_every": 0,  # samples at epoch ends (none in 30 steps) and the end, not on a clock
    }
    full_writes = _record_writes(monkeypatch)
    chargen.train(str(corpus), tmp_path / "full", **options)
    full = tmp_path / "full"

    run = tmp_path / "run"
    writes = _record_writes(monkeypatch, fail=(4, failure))
    expected = CheckpointError if failure == "enospc" else KeyboardInterrupt
    with pytest.raises(expected) as info:
        chargen.train(str(corpus), run, **options)
    monkeypatch.undo()
    if failure == "enospc":
        message = str(info.value)
        assert ckpt.TRAINER in message and "No space left" in message and "\n" not in message

    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert len(writes[ckpt.TRAINER]) == 3  # steps 5, 10, 15
    assert (run / ckpt.TRAINER).read_bytes() == writes[ckpt.TRAINER][-1]
    assert ckpt.load_trainer_state(run).meta["step"] == 15
    for name in (ckpt.WEIGHTS, ckpt.BEST):  # whole files of the same trajectory, not older
        content = _content((run / name).read_bytes())
        assert content in [_content(data) for data in full_writes[name]], name
        assert 15 <= json.loads(content[1]["step"]) <= 20, name
    before = _records(run)
    assert before == [r for r in _records(full) if r["step"] <= 20]
    assert max(r["step"] for r in before) == 20  # ahead of the checkpoint: the resume drops it
    ckpt.load_run(run, "last")
    ckpt.load_run(run, "best")

    resumed = chargen.resume(run)
    assert resumed.step == 30
    for name in (ckpt.WEIGHTS, ckpt.BEST):
        assert _content((run / name).read_bytes()) == _content((full / name).read_bytes()), name
    for name in (ckpt.CONFIG, ckpt.TOKENIZER):
        assert (run / name).read_bytes() == (full / name).read_bytes(), name
    a, b = ckpt.load_trainer_state(full), ckpt.load_trainer_state(run)
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    for slot, state in a.optimizer["state"].items():
        assert all(torch.equal(v, b.optimizer["state"][slot][k]) for k, v in state.items())
    untimed = [
        {**m, "elapsed": 0, "early_stop": {**m["early_stop"], "best_elapsed": 0}}
        for m in (a.meta, b.meta)
    ]
    assert untimed[0] == untimed[1]
    # no record lost, none twice; a train record's loss (a mean over the steps since the last
    # one) is left out: test_train.py::test_resume_logs_the_train_loss_of_an_uninterrupted_run
    assert _without_train_loss(_records(run)) == _without_train_loss(_records(full))


def test_a_resume_whose_first_write_fails_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write fails (a full disk, half of each write landing first): the first write of a
    resume, the rewrite of metrics.jsonl, fails before any step, and every file is as before."""
    run = _trained(tmp_path)
    before = _snapshot(run)
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes half of what it is given, then fails as a full disk would."""

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
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None: ...

        def fileno(self) -> int:
            return self.handle.fileno()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(CheckpointError) as info:
        chargen.resume(run, steps=20)
    message = str(info.value)
    assert ckpt.METRICS in message and "No space left" in message and "\n" not in message
    monkeypatch.setattr(atomic.os, "fdopen", real_fdopen)
    assert _snapshot(run) == before
    assert ckpt.load_trainer_state(run).meta["step"] == 10
    assert chargen.resume(run, steps=12).step == 12


def test_a_partial_temporary_is_never_what_loads(tmp_path: Path) -> None:
    run = _trained(tmp_path)
    good = (run / ckpt.TRAINER).read_bytes()
    (run / f".{ckpt.TRAINER}.abc123.tmp").write_bytes(good[: len(good) // 3])
    assert ckpt.load_trainer_state(run).meta["step"] == 10
    chargen.resume(run, steps=12)
    assert not list(run.glob(".*.tmp"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed at step 10 (checkpoints every 10), the 4th loss (step 14) is NaN: training stops
    naming step 14 and the checkpoint it keeps (step 10), and no file of the run has changed
    but config.json, which holds the resume's new budget."""
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
        chargen.resume(run, steps=30)
    assert "the last good checkpoint (step 10) is kept" in str(info.value)
    assert calls["n"] == 4  # it stopped at the NaN
    monkeypatch.undo()
    after = _snapshot(run)
    assert ckpt.load_config(run).train.steps == 30
    del after[ckpt.CONFIG], good[ckpt.CONFIG]
    assert after == good  # nothing of steps 11-14 was written
    assert ckpt.load_trainer_state(run).meta["step"] == 10
    weights = load_file(run / ckpt.WEIGHTS)
    assert all(np.isfinite(v).all() for v in weights.values())
    assert chargen.resume(run, steps=12).step == 12


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
