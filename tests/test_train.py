"""Training really learns, is reproducible, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import chargen
from chargen import checkpoint as ckpt
from chargen.config import ModelConfig, TrainConfig
from chargen.errors import CheckpointError, TrainingError
from chargen.evaluate import unigram_entropy
from chargen.models import build_model
from chargen.reporting import Reporter
from chargen.tokenizer import build_tokenizer
from chargen.training import lr_factor, resolve_precision, row_chunks, row_slices
from tests.conftest import TINY, make_text

runtime_module = importlib.import_module("chargen.training.runtime")


def _eval_records(run: Path) -> list[dict]:
    return [r for r in ckpt.MetricsLog(run).read() if r["kind"] == "eval"]


def test_training_lowers_validation_loss_far_below_unigram_entropy(
    corpus_file: Path, tmp_path: Path
) -> None:
    result = chargen.train(str(corpus_file), tmp_path / "run", steps=150, **TINY)
    text = corpus_file.read_text()
    tok = build_tokenizer("char", text)
    h_unigram = unigram_entropy(tok.encode(text), tok.vocab_size)
    evals = _eval_records(tmp_path / "run")
    assert evals[0]["val_nats_per_char"] > evals[-1]["val_nats_per_char"]
    assert result.best_val_nats_per_char is not None
    # the grammar leaves ~0.3 nats/char of real uncertainty; unigram entropy is ~2.9
    assert result.best_val_nats_per_char < 0.5 * h_unigram
    for record in evals:
        assert record["val_bits_per_char"] == pytest.approx(record["val_nats_per_char"] / np.log(2))


def test_run_directory_contents(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=30, **TINY)
    for name in ckpt.RUN_FILES:
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["format"] == "chargen-run" and config["model"]["vocab_size"] > 10
    samples = [r for r in ckpt.MetricsLog(run).read() if r["kind"] == "sample"]
    temps = [s["temperature"] for s in samples if s["step"] == 30]
    assert temps == [0.2, 0.5, 1.0, 1.2]
    assert len({s["seed_text"] for s in samples}) == 1
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_same_seed_same_weights_and_text(corpus_file: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        chargen.train(str(corpus_file), tmp_path / name, steps=25, **TINY)
    wa = load_file(tmp_path / "a" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "model.safetensors")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    ta = chargen.load(tmp_path / "a").generate("the ", 80, 1.0, seed=5)
    tb = chargen.load(tmp_path / "b").generate("the ", 80, 1.0, seed=5)
    assert ta == tb and len(ta) == 80


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_resume_equals_uninterrupted_run(corpus_file: Path, tmp_path: Path, batching: str) -> None:
    options = {**TINY, "batching": batching, "maxlen": 20, "dropout": 0.2}
    chargen.train(str(corpus_file), tmp_path / "full", steps=40, **options)
    from chargen.api import build_configs
    from chargen.training import resume_run, start_run

    m, t, d = build_configs(str(corpus_file), "medium", {"steps": 40}, options)
    start_run(tmp_path / "cut", d, m, t, stop_at_step=17)
    resume_run(tmp_path / "cut")
    full = load_file(tmp_path / "full" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "model.safetensors")
    for key in full:
        assert np.array_equal(full[key], cut[key]), key
    # metrics are not duplicated by the resume
    steps = [r["step"] for r in _eval_records(tmp_path / "cut")]
    assert steps == sorted(set(steps))


def test_existing_run_is_not_overwritten(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=5, **TINY)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        chargen.train(str(corpus_file), run, steps=5, **TINY)
    assert (run / "model.safetensors").read_bytes() == before
    chargen.train(str(corpus_file), run, steps=5, overwrite=True, **{**TINY, "seed": 7})
    assert (run / "model.safetensors").read_bytes() != before


def test_resume_with_a_larger_budget_continues(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=10, **TINY)
    result = chargen.train(str(corpus_file), run, steps=20, resume=True)
    assert result.step == 20


def test_seed_preset_trains_with_windows(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(make_text(4000), encoding="utf-8")
    result = chargen.train(
        str(path), tmp_path / "run", preset="seed", steps=6, sample_length=10, threads=1
    )
    config = ckpt.load_config(tmp_path / "run")
    assert config.train.batching == "windows" and config.model.embed_dim == 0
    assert config.model.hidden_size == 128 and config.train.optimizer == "rmsprop"
    assert result.val is not None and np.isfinite(result.val.nats_per_char)


def test_one_symbol_vocabulary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("a" * 5000, encoding="utf-8")
    with pytest.raises(TrainingError, match="vocabulary of 1"):
        chargen.train(str(path), tmp_path / "run", steps=5, **TINY)


def test_corpus_shorter_than_a_sequence_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("hello world, hello there\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="too few"):
        chargen.train(str(path), tmp_path / "run", steps=5, **TINY)


def test_word_level_training(corpus_file: Path, tmp_path: Path) -> None:
    result = chargen.train(str(corpus_file), tmp_path / "run", steps=40, tokenizer="word", **TINY)
    assert result.val is not None and result.val.tokens < result.val.chars
    text = chargen.load(tmp_path / "run").generate("the cat ", 12, 0.5)
    assert isinstance(text, str) and text


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 0.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 0.5) == pytest.approx(0.55)
    assert lr_factor(cfg, 100, 1.0) == pytest.approx(0.1)
    assert lr_factor(TrainConfig(schedule="constant", warmup_steps=0), 100, 0.7) == 1.0


def test_model_config_round_trips() -> None:
    cfg = ModelConfig(family="gru", vocab_size=30, hidden_size=64, num_layers=2, dropout=0.1)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    tc = TrainConfig(sample_temperatures=(0.3, 1.0), minutes=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc


def test_row_chunks_keep_the_lstm_workspace_within_budget() -> None:
    cpu = torch.device("cpu")
    big = build_model(ModelConfig(vocab_size=60, embed_dim=64, hidden_size=512))
    expected = (
        2 if torch.backends.mkldnn.is_available() else 1
    )  # 15.4 x 4 B x 32 x 64 x 512 = 64.6 MB
    assert row_chunks(big, 32, 64, cpu) == expected
    assert row_chunks(big, 128, 64, cpu) == (8 if expected == 2 else 1)  # 16 rows, 32 MiB each
    assert row_chunks(big, 31, 64, cpu) == 1  # slices of fewer than 16 rows run slower
    wide = build_model(ModelConfig(vocab_size=60, embed_dim=64, hidden_size=1024))
    assert row_chunks(wide, 32, 64, cpu) == 1  # 16-row slices would still pass the budget
    assert row_chunks(big, 32, 64, torch.device("cuda")) == 1
    assert row_chunks(build_model(ModelConfig(vocab_size=60, hidden_size=48)), 32, 64, cpu) == 1
    gru = build_model(ModelConfig(vocab_size=60, hidden_size=512, family="gru"))
    assert row_chunks(gru, 32, 64, cpu) == 1
    assert row_slices(10, 3) == [slice(0, 3), slice(3, 7), slice(7, 10)]
    assert row_slices(2, 5) == [slice(0, 1), slice(1, 2)]
    assert row_slices(8, 1) == [slice(0, 8)]


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_a_batch_run_in_row_slices_takes_the_same_steps(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batching: str
) -> None:
    """Each slice's mean loss weighted by its rows: the gradient of the whole batch's mean."""
    options = {**TINY, "dropout": 0.0, "batching": batching, "maxlen": 20, "precision": "fp32"}
    whole = chargen.train(str(corpus_file), tmp_path / "whole", steps=6, **options)
    monkeypatch.setattr(
        importlib.import_module("chargen.training.step"), "row_chunks", lambda *args: 3
    )
    sliced = chargen.train(str(corpus_file), tmp_path / "sliced", steps=6, **options)
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "sliced" / "model.safetensors")
    for key in a:
        assert np.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    assert whole.best_val_nats_per_char == pytest.approx(sliced.best_val_nats_per_char, rel=1e-4)


def test_compile_without_a_cpp_compiler_is_one_clear_error(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module.shutil, "which", lambda name: None)
    with pytest.raises(TrainingError, match=r"--compile on the CPU needs a C\+\+ compiler"):
        chargen.train(str(corpus_file), tmp_path / "run", steps=2, compile=True, **TINY)
    assert not (tmp_path / "run").exists()


def test_a_compiler_failure_is_one_clear_error(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch._dynamo.exc import InternalTorchDynamoError

    class Broken(torch.nn.Module):
        def forward(self, *args: object) -> None:
            raise InternalTorchDynamoError("inductor could not build the kernel\nmore detail")

    monkeypatch.setattr(runtime_module.torch, "compile", lambda net: Broken())
    with pytest.raises(TrainingError) as caught:
        chargen.train(str(corpus_file), tmp_path / "run", steps=2, compile=True, **TINY)
    assert str(caught.value) == (
        "--compile failed at step 1 (InternalTorchDynamoError: inductor could not build the "
        "kernel); train without --compile"
    )


@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile on the CPU needs a C++ compiler; none on PATH",
)
def test_compiled_training_takes_the_same_steps_and_resumes_without_it(
    corpus_file: Path, tmp_path: Path
) -> None:
    options = {**TINY, "dropout": 0.0, "sample_length": 0, "precision": "fp32"}
    plain = chargen.train(str(corpus_file), tmp_path / "plain", steps=8, **options)
    chargen.train(str(corpus_file), tmp_path / "compiled", steps=4, compile=True, **options)
    from chargen.training import resume_run

    resumed = resume_run(tmp_path / "compiled", budget={"steps": 8}, runtime={"compile": False})
    a = load_file(tmp_path / "plain" / "model.safetensors")
    b = load_file(tmp_path / "compiled" / "model.safetensors")
    for key in a:
        assert np.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    assert plain.best_val_nats_per_char == pytest.approx(resumed.best_val_nats_per_char, rel=1e-4)
    assert ckpt.load_config(tmp_path / "compiled").train.compile  # runtime changes are not saved


def test_auto_precision_is_bf16_only_where_the_hardware_computes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    for avx512_bf16, amx, expected in (
        (True, False, "bf16"),
        (False, True, "bf16"),
        (False, False, "fp32"),
    ):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision("auto", cpu) == expected
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision("auto", cpu) == "fp32"  # no oneDNN: no bf16 kernels
    for supported, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda v=supported: v)
        assert resolve_precision("auto", cuda) == expected


def test_the_chosen_precision_is_reported_and_the_config_keeps_auto(
    corpus_file: Path, tmp_path: Path
) -> None:
    lines: list[dict] = []

    class Collect(Reporter):
        def start(self, info: dict) -> None:
            lines.append(info)

    chargen.train(str(corpus_file), tmp_path / "run", steps=2, reporter=Collect(), **TINY)
    expected = resolve_precision("auto", torch.device("cpu"))
    assert lines and lines[0]["precision"] == expected
    assert ckpt.load_config(tmp_path / "run").train.precision == "auto"
