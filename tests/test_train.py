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
from chargen.cli import main
from chargen.config import ModelConfig, build_configs
from chargen.errors import TrainingError
from chargen.evaluate import unigram_entropy
from chargen.models import build_model
from chargen.reporting import Reporter
from chargen.tokenizer import build_tokenizer
from chargen.training import resolve_precision, resume_run, row_chunks, row_slices, start_run
from tests.conftest import TINY, make_text

runtime_module = importlib.import_module("chargen.training.runtime")


def _eval_records(run: Path) -> list[dict]:
    return [r for r in ckpt.MetricsLog(run).read() if r["kind"] == "eval"]


def test_training_lowers_validation_loss_far_below_unigram_entropy(
    corpus_file: Path, tmp_path: Path
) -> None:
    result = chargen.train(str(corpus_file), tmp_path / "run", steps=150, preset="medium", **TINY)
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
    chargen.train(str(corpus_file), run, steps=30, preset="medium", **TINY)
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
        chargen.train(str(corpus_file), tmp_path / name, steps=25, preset="medium", **TINY)
    wa = load_file(tmp_path / "a" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "model.safetensors")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    ta = chargen.load(tmp_path / "a").generate("the ", 80, 1.0, seed=5)
    tb = chargen.load(tmp_path / "b").generate("the ", 80, 1.0, seed=5)
    assert ta == tb and len(ta) == 80


def _cut_and_resume(corpus: Path, run: Path, steps: int, cut: int, options: dict) -> None:
    """Train ``run`` for ``steps`` steps of preset medium with ``options``, stopped after step
    ``cut`` (its checkpoint written) and resumed."""
    m, t, d = build_configs(str(corpus), "medium", {"steps": steps}, options)
    assert start_run(run, d, m, t, stop_at_step=cut).step == cut
    assert resume_run(run).step == steps


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / ckpt.WEIGHTS), load_file(b / ckpt.WEIGHTS)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert np.array_equal(wa[key], wb[key]), key


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_resume_equals_uninterrupted_run(corpus_file: Path, tmp_path: Path, batching: str) -> None:
    options = {**TINY, "batching": batching, "maxlen": 20, "dropout": 0.2}
    chargen.train(str(corpus_file), tmp_path / "full", steps=40, preset="medium", **options)
    _cut_and_resume(corpus_file, tmp_path / "cut", 40, 17, options)
    _same_weights(tmp_path / "full", tmp_path / "cut")
    # metrics are not duplicated by the resume
    steps = [r["step"] for r in _eval_records(tmp_path / "cut")]
    assert steps == sorted(set(steps))


# 4,000 characters, a training split of 3,600 tokens: 13 steps per epoch in 8 streams of 32,
# 10 in batches of 128 windows (1,194 windows of 20 every 3 tokens); see test_budget.py
EPOCH_CORPUS = 4000


@pytest.mark.parametrize(
    "batching, steps, cut",
    [
        ("streams", 30, 13),  # at the end of the first epoch, before the next one began
        ("streams", 30, 20),  # in the middle of the second
        ("streams", 30, 27),  # one step into the third
        ("windows", 25, 10),
        ("windows", 25, 15),
    ],
)
def test_resume_across_an_epoch_boundary_equals_an_uninterrupted_run(
    tmp_path: Path, batching: str, steps: int, cut: int
) -> None:
    """Bit for bit on the CPU with one thread. Each epoch reads its own batches (streams: a new
    start offset, the carried state reset; windows: a new shuffle), so would catch a resume that
    restores the wrong epoch or position in it, drops the carried state, or restores the RNG
    state (dropout) of another step."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(EPOCH_CORPUS)[:EPOCH_CORPUS], encoding="utf-8")
    options = {**TINY, "batching": batching, "maxlen": 20, "window_step": 3, "dropout": 0.2}
    per_epoch = 13
    if batching == "windows":
        options["batch_size"] = 128
        per_epoch = 10
    chargen.train(str(corpus), tmp_path / "full", steps=steps, preset="medium", **options)
    _cut_and_resume(corpus, tmp_path / "cut", steps, cut, options)
    _same_weights(tmp_path / "full", tmp_path / "cut")
    for run in ("full", "cut"):  # both are 4 or 5 steps into their third epoch
        meta = ckpt.load_trainer_state(tmp_path / run).meta
        assert (meta["epoch"], meta["step_in_epoch"]) == divmod(steps, per_epoch), run


def test_resume_logs_the_train_loss_of_an_uninterrupted_run(
    corpus_file: Path, tmp_path: Path
) -> None:
    """A train record every 25 steps holds the mean loss of the 25 steps before it; cut at 15
    and resumed, the record at step 25 should still average steps 1-25, not 16-25."""
    options = {**TINY, "sample_length": 0}
    chargen.train(str(corpus_file), tmp_path / "full", steps=30, preset="medium", **options)
    _cut_and_resume(corpus_file, tmp_path / "cut", 30, 15, options)

    def train_records(run: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in ckpt.MetricsLog(run).read() if r["kind"] == "train"]

    assert [step for step, _ in train_records(tmp_path / "full")] == [25]
    assert train_records(tmp_path / "cut") == train_records(tmp_path / "full")


def _refused_resume(capsys: pytest.CaptureFixture[str], run: Path, corpus: Path) -> str:
    """Resume ``run`` on the command line with a new budget: the one line of error it gives,
    after checking that it changed nothing in the run folder."""
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = main(["train", str(corpus), "--out", str(run), "--resume", "--steps", "12"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("chargen: error:"), err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # not even the budget
    return lines[0]


def test_resume_refuses_a_changed_corpus(
    corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One character changed for another of the vocabulary: same length, same vocabulary, so
    only the checksum can tell (would catch a check of the size or the vocabulary alone)."""
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=6, preset="medium", **TINY)
    text = corpus_file.read_text(encoding="utf-8")
    i = len(text) // 2
    corpus_file.write_text(text[:i] + ("a" if text[i] != "a" else "e") + text[i + 1 :], "utf-8")
    line = _refused_resume(capsys, run, corpus_file)
    assert "the corpus differs from the one this run was trained on" in line and str(run) in line
    corpus_file.write_text(text, encoding="utf-8")  # the original text: it resumes
    assert chargen.train(str(corpus_file), run, steps=8, resume=True).step == 8


def test_resume_refuses_a_changed_batch_layout(
    corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config.json edited to another batch size: the saved data position and carried state
    belong to 8 streams, so the resume is refused rather than reading other batches."""
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=6, preset="medium", **TINY)
    config = json.loads((run / ckpt.CONFIG).read_text(encoding="utf-8"))
    assert config["train"]["batch_size"] == 8
    config["train"]["batch_size"] = 4
    (run / ckpt.CONFIG).write_text(json.dumps(config), encoding="utf-8")
    line = _refused_resume(capsys, run, corpus_file)
    assert "the batch layout changed since the run started" in line and str(run) in line


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
        chargen.train(str(path), tmp_path / "run", steps=5, preset="medium", **TINY)


def test_corpus_shorter_than_a_sequence_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("hello world, hello there\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="too few"):
        chargen.train(str(path), tmp_path / "run", steps=5, preset="medium", **TINY)


def test_word_level_training(corpus_file: Path, tmp_path: Path) -> None:
    result = chargen.train(
        str(corpus_file), tmp_path / "run", steps=40, tokenizer="word", preset="medium", **TINY
    )
    assert result.val is not None and result.val.tokens < result.val.chars
    text = chargen.load(tmp_path / "run").generate("the cat ", 12, 0.5)
    assert isinstance(text, str) and text


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
    """Each slice's mean loss weighted by its rows: the gradient of the whole batch's mean.

    Plain SGD without clipping at a high learning rate, so the steps follow the gradient's
    scale (AdamW and clipping would hide a wrong one). 8 rows in 3 slices (3, 3, 2) took the
    same steps to within 2.4e-7 (largest weight difference after 6 steps; at most 4.8e-7 over
    12 steps at twice the rate); a mean of the slices' means (equal weights) moved weights by
    0.016-0.075, a sum of them by 0.9-1.1, and a gradient 0.2% too large in sliced steps
    only, which AdamW with clipping and the former tolerance (1e-5) let pass, fails here too.
    """
    options = {
        **TINY,
        "dropout": 0.0,
        "batching": batching,
        "maxlen": 20,
        "precision": "fp32",
        "optimizer": "sgd",
        "grad_clip": 0.0,
        "lr": 0.5,
        "warmup_steps": 0,
        "schedule": "constant",
    }
    whole = chargen.train(str(corpus_file), tmp_path / "whole", steps=6, preset="medium", **options)
    monkeypatch.setattr(
        importlib.import_module("chargen.training.step"), "row_chunks", lambda *args: 3
    )
    sliced = chargen.train(
        str(corpus_file), tmp_path / "sliced", steps=6, preset="medium", **options
    )
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "sliced" / "model.safetensors")
    for key in a:
        assert np.allclose(a[key], b[key], rtol=0, atol=1e-6), key
    assert whole.best_val_nats_per_char == pytest.approx(sliced.best_val_nats_per_char, rel=1e-6)


def test_compile_without_a_cpp_compiler_is_one_clear_error(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module.shutil, "which", lambda name: None)
    with pytest.raises(TrainingError, match=r"--compile on the CPU needs a C\+\+ compiler"):
        chargen.train(
            str(corpus_file), tmp_path / "run", steps=2, compile=True, preset="medium", **TINY
        )
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
        chargen.train(
            str(corpus_file), tmp_path / "run", steps=2, compile=True, preset="medium", **TINY
        )
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
    plain = chargen.train(str(corpus_file), tmp_path / "plain", steps=8, preset="medium", **options)
    chargen.train(
        str(corpus_file), tmp_path / "compiled", steps=4, compile=True, preset="medium", **options
    )
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

    chargen.train(
        str(corpus_file), tmp_path / "run", steps=2, reporter=Collect(), preset="medium", **TINY
    )
    expected = resolve_precision("auto", torch.device("cpu"))
    assert lines and lines[0]["precision"] == expected
    assert ckpt.load_config(tmp_path / "run").train.precision == "auto"
