"""``Trainer.fit`` fires its callbacks after every step; evaluation, samples, checkpoints and
the records are callbacks (``training/callbacks.py``), so a list without one lacks its work."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

import chargen
from chargen.training.callbacks import Evaluation, StepInfo
from tests.conftest import TINY, make_text

trainer_module = importlib.import_module("chargen.training.trainer")
OPTIONS = {**TINY, "sample_length": 0, "preset": "medium", "steps": 60}


def _records(run: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(12_000), encoding="utf-8")
    return path


def test_every_step_fires_the_callbacks_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, float, float]] = []

    class Recorder:
        def on_step(self, trainer: Any, info: StepInfo) -> None:
            seen.append((trainer.step, info.loss, info.train_avg))

    real = trainer_module.default_callbacks
    monkeypatch.setattr(trainer_module, "default_callbacks", lambda: [*real(), Recorder()])
    chargen.train(str(_corpus(tmp_path)), tmp_path / "run", **OPTIONS)
    assert [step for step, _, _ in seen] == list(range(1, 61))
    records = _records(tmp_path / "run", "train")
    assert [r["step"] for r in records] == [25, 50]
    for record in records:  # what the train record wrote is what the callbacks after it saw
        assert seen[record["step"] - 1][2] == record["loss"]
    assert all(avg == loss for step, loss, avg in seen if step % 25)


def test_a_list_without_the_evaluation_callback_has_no_step_clock_evaluations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = trainer_module.default_callbacks
    with_eval = tmp_path / "with"
    chargen.train(str(_corpus(tmp_path)), with_eval, **OPTIONS)
    # every eval_every (20) steps, at the end of the 42-step epoch, and at the end
    assert [r["step"] for r in _records(with_eval, "eval")] == [20, 40, 42, 60]

    monkeypatch.setattr(
        trainer_module,
        "default_callbacks",
        lambda: [c for c in real() if not isinstance(c, Evaluation)],
    )
    run = tmp_path / "without"
    chargen.train(str(_corpus(tmp_path)), run, **OPTIONS)
    # the epoch's and the last evaluation are the loop's own; the step clock's are gone
    assert [r["step"] for r in _records(run, "eval")] == [42, 60]
