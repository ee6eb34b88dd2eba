"""When training stops and how its learning rate moves (chargen.training.schedule and the loop).

The ``--minutes`` budget is tested on a fake clock: ``time.perf_counter`` as the trainer sees
it advances only when a training step runs, by a duration the test chooses, so every
expectation is exact and nothing depends on this machine's speed.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file

import chargen
from chargen import checkpoint as ckpt
from chargen.cli import main
from chargen.config import TrainConfig, build_configs
from chargen.training import Budget, Trainer, lr_factor, make_budget, resume_run, start_run
from tests.conftest import TINY, TINY_FLAGS, make_text

trainer_module = importlib.import_module("chargen.training.loop")  # the clock fit reads

# the fake clock's step durations: 10 steps of 0.5 s (5 s), then 1.25 s each, so a 30 s
# budget (--minutes 0.5) ends exactly at step 30; binary fractions keep every sum exact
FAST, SLOW, FAST_STEPS = 0.5, 1.25, 10
OPTIONS = {**TINY, "warmup_steps": 0, "min_lr_ratio": 0.1, "dropout": 0.0, "sample_length": 0}


def elapsed_after(steps: int) -> float:
    """Fake seconds after ``steps`` training steps."""
    return FAST * min(steps, FAST_STEPS) + SLOW * max(0, steps - FAST_STEPS)


def cosine_lr(elapsed: float, budget: float) -> float:
    """The schedule written out: cosine from lr to lr x min_lr_ratio over the budget's time."""
    lr, low = OPTIONS["lr"], OPTIONS["min_lr_ratio"]
    return lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget))))


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> dict[int, float]:
    """Installs the fake clock; returns {step index: learning rate it ran with}, filled as
    steps run (a resumed run adds its own steps to the same record)."""
    now = [1000.0]
    lrs: dict[int, float] = {}
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    real_step = Trainer.train_step

    def timed_step(self: Trainer, epoch: int, index: int) -> float:
        lrs[self.step] = self.optimizer.param_groups[0]["lr"]
        loss = real_step(self, epoch, index)
        now[0] += FAST if self.step < FAST_STEPS else SLOW
        return loss

    monkeypatch.setattr(Trainer, "train_step", timed_step)
    return lrs


def _corpus(tmp_path: Path, chars: int = 12_000) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(chars)[:chars], encoding="utf-8")
    return path


def test_minutes_budget_stops_at_the_budget_and_the_lr_follows_elapsed_time(
    tmp_path: Path, fake_clock: dict[int, float]
) -> None:
    """Would catch: stopping on a step count or on the real clock, a schedule that follows the
    step count (at step 10, 1/3 of the steps but 1/6 of the time), stopping a step late."""
    result = chargen.train(
        str(_corpus(tmp_path)), tmp_path / "run", preset="medium", minutes=0.5, **OPTIONS
    )
    assert result.step == 30 and result.elapsed == 30.0
    assert ckpt.load_trainer_state(tmp_path / "run").meta["elapsed"] == 30.0
    assert sorted(fake_clock) == list(range(30))
    for step, lr in fake_clock.items():
        assert lr == pytest.approx(cosine_lr(elapsed_after(step), 30.0), rel=1e-9), step
    # at step 10 a third of the steps but a sixth of the time has passed
    assert fake_clock[10] != pytest.approx(cosine_lr(10.0, 30.0), rel=1e-3)
    evals = [r for r in ckpt.MetricsLog(tmp_path / "run").read() if r["kind"] == "eval"]
    assert [(r["step"], r["elapsed"]) for r in evals] == [(20, 17.5), (30, 30.0)]


def test_a_resumed_minutes_run_continues_the_clock(
    tmp_path: Path, fake_clock: dict[int, float]
) -> None:
    """Cut at step 12 (7.5 s of 30 s), resumed: it stops at 30 s of training in all, with the
    learning rates and weights of the uninterrupted run. A clock restarted at the resume would
    train 30 s more (to step 36) on a schedule started again from the top."""
    corpus = _corpus(tmp_path)
    chargen.train(str(corpus), tmp_path / "full", preset="medium", minutes=0.5, **OPTIONS)
    full_lrs = dict(fake_clock)
    fake_clock.clear()
    m, t, d = build_configs(str(corpus), "medium", {"minutes": 0.5}, OPTIONS)
    cut = start_run(tmp_path / "cut", d, m, t, stop_at_step=12)
    assert cut.step == 12 and cut.elapsed == elapsed_after(12) == 7.5
    assert ckpt.load_trainer_state(tmp_path / "cut").meta["elapsed"] == 7.5
    resumed = resume_run(tmp_path / "cut")
    assert resumed.step == 30 and resumed.elapsed == 30.0
    assert fake_clock == full_lrs  # steps 0-11 before the cut, 12-29 after it
    a = load_file(tmp_path / "full" / ckpt.WEIGHTS)
    b = load_file(tmp_path / "cut" / ckpt.WEIGHTS)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_larger_minutes_budget_at_resume_counts_the_time_already_trained(
    tmp_path: Path, fake_clock: dict[int, float]
) -> None:
    """15 s (step 18: 5 s + 8 x 1.25 s), then resumed with 30 s: 12 more steps, not 30 s more."""
    corpus = _corpus(tmp_path)
    first = chargen.train(str(corpus), tmp_path / "run", preset="medium", minutes=0.25, **OPTIONS)
    assert first.step == 18 and first.elapsed == 15.0
    again = chargen.train(str(corpus), tmp_path / "run", minutes=0.5, resume=True)
    assert again.step == 30 and again.elapsed == 30.0
    for step in range(18, 30):  # the new budget's schedule, from the time already trained
        assert fake_clock[step] == pytest.approx(cosine_lr(elapsed_after(step), 30.0), rel=1e-9)


# ------------------------------------------------------------------------------- epochs
# 4,000 characters: a training split of 3,600 tokens. Streams (batch 8, seq_len 32): 8 streams
# of (3600 - 32) // 8 = 446 tokens, (446 - 1) // 32 = 13 steps per epoch. Windows (maxlen 20,
# step 3, batch 128): starts 0, 3, ..., 3579 (1,194 windows), ceil(1194 / 128) = 10 steps.


@pytest.mark.parametrize(
    "batching, epochs, steps, epoch",
    [
        ("streams", 2, 26, 2.0),
        ("streams", 0.5, 7, round(7 / 13, 4)),  # ceil(6.5)
        ("streams", 1.25, 17, round(1 + 4 / 13, 4)),  # ceil(16.25)
        ("windows", 2, 20, 2.0),
        ("windows", 0.35, 4, 0.4),  # ceil(3.5)
    ],
)
def test_epochs_train_the_right_number_of_steps(
    tmp_path: Path, batching: str, epochs: float, steps: int, epoch: float
) -> None:
    corpus = _corpus(tmp_path, 4000)
    flags = ["--batching", batching, "--maxlen", "20", "--window-step", "3"]
    if batching == "windows":
        flags += ["--batch-size", "128"]  # after TINY_FLAGS' 8: the last one given wins
    argv = ["train", str(corpus), "--out", str(tmp_path / "run"), "--preset", "medium"]
    assert main([*argv, "--epochs", str(epochs), *TINY_FLAGS, *flags]) == 0
    meta = ckpt.load_trainer_state(tmp_path / "run").meta
    assert meta["step"] == steps
    expected_epochs, expected_in_epoch = divmod(steps, 13 if batching == "streams" else 10)
    assert (meta["epoch"], meta["step_in_epoch"]) == (expected_epochs, expected_in_epoch)
    evals = [r for r in ckpt.MetricsLog(tmp_path / "run").read() if r["kind"] == "eval"]
    assert (evals[-1]["step"], evals[-1]["epoch"]) == (steps, epoch)  # the last evaluation


def test_make_budget_takes_the_first_of_steps_epochs_minutes() -> None:
    assert make_budget(TrainConfig(steps=7, epochs=3, minutes=1), 10) == Budget(7, None)
    assert make_budget(TrainConfig(epochs=2.5), 10) == Budget(25, None)
    assert make_budget(TrainConfig(epochs=0.01), 10) == Budget(1, None)  # at least one step
    assert make_budget(TrainConfig(epochs=0.15), 10) == Budget(2, None)  # ceil(1.5)
    assert make_budget(TrainConfig(minutes=1.5), 10) == Budget(None, 90.0)
    assert make_budget(TrainConfig(), 10) == Budget(10, None)  # no budget: one epoch


def test_budget_fraction_and_done() -> None:
    steps = Budget(40, None)
    assert steps.fraction(10, 999.0) == 0.25 and steps.fraction(50, 0.0) == 1.0
    assert not steps.done(39, 1e9) and steps.done(40, 0.0)
    seconds = Budget(None, 60.0)
    assert seconds.fraction(10_000, 15.0) == 0.25 and seconds.fraction(1, 90.0) == 1.0
    assert not seconds.done(10**9, 59.9) and seconds.done(0, 60.0)


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 0.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 0.5) == pytest.approx(0.55)
    assert lr_factor(cfg, 100, 1.0) == pytest.approx(0.1)
    assert lr_factor(TrainConfig(schedule="constant", warmup_steps=0), 100, 0.7) == 1.0
