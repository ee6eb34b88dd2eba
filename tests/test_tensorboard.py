"""``--log tensorboard``: the event files, read back with TensorBoard's own reader, hold the named
scalars at the steps ``metrics.jsonl`` logged them and the text samples; a missing package is
one line naming the extra, before the run folder is touched."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import chargen
from chargen import checkpoint as ckpt
from chargen.errors import ConfigError
from tests.conftest import TINY, make_text

OPTIONS = {**TINY, "eval_every": 20, "sample_every": 0.0, "sample_length": 30}


def read_events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def scalar_steps(events: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tb") / "corpus.txt"
    path.write_text(make_text(8_000), encoding="utf-8")
    return path


def test_scalars_and_samples_match_the_metrics_log(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus), run, preset="small", steps=60, log="tensorboard", **OPTIONS)
    records = list(ckpt.MetricsLog(run).read())
    events = read_events(run)
    evals = [r for r in records if r["kind"] == "eval"]
    trains = [r for r in records if r["kind"] == "train"]
    assert evals and trains
    for tag, key in (("val/nats_per_char", "val_nats_per_char"), ("val/bits_per_char", "val_bits_per_char")):  # fmt: skip
        logged = scalar_steps(events, tag)
        assert logged == pytest.approx({r["step"]: r[key] for r in evals}, rel=1e-6)
    assert scalar_steps(events, "train/loss") == pytest.approx(
        {r["step"]: r["loss"] for r in trains}, rel=1e-6
    )
    assert set(scalar_steps(events, "train/lr")) == {r["step"] for r in trains}
    assert set(scalar_steps(events, "train/chars_per_s")) == {r["step"] for r in trains}
    samples = [r for r in records if r["kind"] == "sample"]
    tags = events.Tags()["tensors"]
    for record in samples:
        tag = f"samples/T={record['temperature']}"
        assert tag + "/text_summary" in tags
        texts = [
            e.tensor_proto.string_val[0].decode()
            for e in events.Tensors(tag + "/text_summary")
            if e.step == record["step"]
        ]
        assert any(record["text"] in text for text in texts)


def test_a_resume_hides_what_a_killed_process_logged_past_the_checkpoint(
    corpus: Path, tmp_path: Path
) -> None:
    run, snapshot = tmp_path / "run", tmp_path / "at40"
    chargen.train(str(corpus), run, preset="small", steps=40, log="tensorboard", **OPTIONS)
    shutil.copytree(run, snapshot)
    chargen.train(str(corpus), run, steps=60, resume=True)  # logs past 40 ...
    for name in ckpt.RUN_FILES:  # ... then "dies" with its last checkpoint at step 40
        if (snapshot / name).exists():
            shutil.copy2(snapshot / name, run / name)
    chargen.train(str(corpus), run, steps=80, resume=True)
    evals = [r["step"] for r in ckpt.MetricsLog(run).read() if r["kind"] == "eval"]
    steps = [e.step for e in read_events(run).Scalars("val/nats_per_char")]
    assert 40 in evals and 60 in evals  # logged by both the dead and the last process
    assert sorted(steps) == sorted(set(steps)) == sorted(evals)  # once each, as metrics.jsonl


def test_without_the_package_it_is_one_line_and_no_folder(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'chargen\[tensorboard\]'"):
        chargen.train(str(corpus), tmp_path / "run", preset="small", steps=5, log="tensorboard")
    assert not (tmp_path / "run").exists()


def test_an_unknown_log_kind_is_refused(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--log must be one of none, tensorboard"):
        chargen.train(str(corpus), tmp_path / "run", preset="small", steps=5, log="wandb")
