"""``--preset auto``: the table's choice, the user's flags winning, the budget, the probe, the run.

The oracle for ``pick`` is a brute-force search over the table's cells for the one nearest in
log size plus log budget along each axis; the end-to-end tests read ``config.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from chargen import auto
from chargen.config import DEFAULT_PRESET, TrainConfig
from tests.conftest import make_text, run_chargen


def fixed(model: object, train: object) -> float:
    """A stand-in for the model-speed probe: the reference speed."""
    return auto.REFERENCE_CHARS_PER_S


def brute_force_pick(tokens: float, minutes: float) -> str:
    """The cell whose size and budget are each the nearest in log distance (ties: the smaller)."""
    size = min(auto.SIZES, key=lambda s: (abs(math.log(tokens / s)), s))
    cells = auto.TABLE[size]
    return min(cells, key=lambda cell: (abs(math.log(minutes / cell[0])), cell[0]))[1]


def test_auto_is_the_default_preset() -> None:
    assert DEFAULT_PRESET == "auto"


def test_nietzsche_for_three_minutes_on_two_cores_gets_the_quality_bars_preset() -> None:
    """540K training characters, 3 minutes at the probe speed of 2 threads (80K chars/s): the
    preset the quality bar of benchmarks/RESULTS.md measured, ``medium``."""
    _, _, choice = auto.choose(TrainConfig(minutes=3.0), {}, 540_000, 80_000.0, fixed)
    assert choice.candidate == "medium"


def test_every_cell_of_the_table_is_picked_at_its_own_size_and_budget() -> None:
    for size, row in auto.TABLE.items():
        for budget, name in row:
            assert auto.pick(size, budget) == name
            assert name in auto.CANDIDATES


@given(
    st.floats(min_value=100, max_value=1e9, allow_nan=False),
    st.floats(min_value=0.01, max_value=1000, allow_nan=False),
)
def test_pick_agrees_with_a_brute_force_nearest_cell(tokens: float, minutes: float) -> None:
    assert auto.pick(int(tokens), minutes) == brute_force_pick(int(tokens), minutes)


def test_the_users_flags_win_and_data_fields_are_left_alone() -> None:
    train = TrainConfig(minutes=1.0)
    explicit = {"hidden_size": 77, "lr": 0.123, "lowercase": True, "dropout": 0.0}
    model, tuned, choice = auto.choose(train, explicit, 50_000, auto.REFERENCE_CHARS_PER_S, fixed)
    assert (model.hidden_size, model.dropout, tuned.lr, tuned.minutes) == (77, 0.0, 0.123, 1.0)
    preset = auto.candidate_preset(choice.candidate)
    assert model.family == preset.model.family and tuned.batch_size == preset.train.batch_size
    assert tuned.patience_share == auto.PATIENCE_SHARE
    assert "77" in choice.line and "1 min" in choice.line


def test_no_budget_means_three_minutes_and_a_given_patience_replaces_autos() -> None:
    _, tuned, choice = auto.choose(TrainConfig(), {"patience": 5}, 10_000, 42_000.0, fixed)
    assert tuned.minutes == auto.DEFAULT_MINUTES and tuned.steps is None
    assert tuned.patience == 5 and tuned.patience_share is None
    assert "3 min" in choice.line


def test_a_budget_in_minutes_scales_with_the_machines_speed() -> None:
    train = TrainConfig(minutes=2.0)
    slow, _ = auto.budget_reference_minutes(train, 10**6, auto.REFERENCE_CHARS_PER_S / 4, {})
    fast, _ = auto.budget_reference_minutes(train, 10**6, auto.REFERENCE_CHARS_PER_S * 4, {})
    assert slow == pytest.approx(0.5) and fast == pytest.approx(8.0)


def test_steps_and_epochs_budgets_count_tokens_whatever_the_machine() -> None:
    steps = TrainConfig(minutes=None, steps=1000)
    minutes, text = auto.budget_reference_minutes(steps, 10**6, 1.0, {"batch_size": 16})
    assert minutes == pytest.approx(1000 * 16 * 64 / auto.REFERENCE_CHARS_PER_S / 60)
    assert text == "1,000 steps"
    epochs = TrainConfig(minutes=None, epochs=3.0)
    minutes, text = auto.budget_reference_minutes(epochs, 200_000, 1e9, {})
    assert minutes == pytest.approx(600_000 / auto.REFERENCE_CHARS_PER_S / 60)
    assert text == "3 epochs"


@pytest.mark.parametrize("budget", [{"minutes": 0.5}, {"minutes": 10.0}, {"steps": 4000}])
@pytest.mark.parametrize("train_tokens", [9_000, 100_000, 5_000_000])
def test_evaluations_come_every_epoch_or_forty_times_a_budget(
    budget: dict, train_tokens: int
) -> None:
    """The cadence, recomputed from its definition: at least 40 evaluations a budget and one an
    epoch (a small text's best comes in its first epochs), never more often than every 10
    steps, and no more than 8% of the budget spent evaluating (at 3x the training speed)."""
    speed = 1e5
    train = TrainConfig(**{"minutes": None, **budget})
    _, tuned, _ = auto.choose(train, {}, train_tokens, 42_000.0, lambda m, t: speed)
    per_step = tuned.batch_size * tuned.seq_len
    steps = budget.get("steps") or budget["minutes"] * 60 * speed / per_step
    epochs = steps * per_step / train_tokens
    affordable = 0.08 * (steps * per_step / speed) * 3 * speed / min(200_000, train_tokens // 9)
    evaluations = max(4, min(max(40, epochs), affordable))
    assert tuned.eval_every == max(10, round(steps / evaluations))
    if train_tokens == 9_000:  # a small text: about one evaluation an epoch (9 steps) or 10 steps
        assert tuned.eval_every == 10


def test_the_speed_measured_is_that_of_the_model_finally_chosen() -> None:
    seen = []
    auto.choose(TrainConfig(minutes=1.0), {"hidden_size": 99}, 10_000, 42_000.0,
                lambda m, t: seen.append((m.hidden_size, t.minutes)) or 1e4)  # fmt: skip
    assert seen == [(99, 1.0)]


def test_the_model_speed_probe_times_a_real_network() -> None:
    model = auto.candidate_preset("lstm128-d2").model
    train = TrainConfig(batch_size=4, seq_len=8)
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    assert auto.model_chars_per_s(model, train, 40, torch.device("cpu")) > 0
    assert torch.equal(torch.rand(2), expected)


def test_the_probe_measures_and_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    speed = auto.probe_chars_per_s(torch.device("cpu"), seconds=0.05)
    assert speed > 0 and torch.equal(torch.rand(3), expected)


def test_sizes_are_said_as_a_person_reads_them() -> None:
    assert [auto.size_text(n) for n in (950, 18_000, 1_115_394)] == ["950", "18K", "1.1M"]


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auto") / "small.txt"
    path.write_text(make_text(6_000))
    return path


def test_a_plain_train_chooses_says_why_and_records_it(small_text: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = ["--steps", "20", "--threads", "1", "--sample-length", "0", "--hidden-size", "40"]
    done = run_chargen("train", str(small_text), "--out", str(run), *flags)
    assert done.returncode == 0, done.stderr
    header = [line for line in done.stdout.splitlines() if line.startswith("auto: ")]
    assert len(header) == 1 and "training chars, 20 steps" in header[0]
    assert "RESULTS.md#auto" in header[0]
    config = json.loads((run / "config.json").read_text())
    chose = config["auto"]
    assert chose["candidate"] in auto.CANDIDATES and chose["line"] == header[0]
    assert chose["train_tokens"] == int(len(make_text(6_000)) * 0.9)
    assert config["model"]["hidden_size"] == 40  # the flag given wins
    expected = auto.candidate_preset(chose["candidate"])
    assert config["model"]["family"] == expected.model.family
    assert config["train"]["lr"] == expected.train.lr
    assert config["train"]["steps"] == 20

    resumed = run_chargen("train", "--resume", "--out", str(run), "--steps", "25")
    assert resumed.returncode == 0, resumed.stderr
    assert "auto: " not in resumed.stdout  # a resumed run keeps its choice
    assert json.loads((run / "config.json").read_text())["auto"] == chose


def test_a_named_preset_is_left_as_it_is(small_text: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = ["--preset", "quick", "--steps", "5", "--threads", "1", "--sample-length", "0"]
    done = run_chargen("train", str(small_text), "--out", str(run), *flags)
    assert done.returncode == 0, done.stderr
    assert "auto: " not in done.stdout
    config = json.loads((run / "config.json").read_text())
    assert "auto" not in config and config["model"]["hidden_size"] == 192
