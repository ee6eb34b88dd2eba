"""Scaling up: prepared (memory-mapped) corpora, torchrun data parallelism, accumulation, bf16."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import chargen
from chargen import checkpoint as ckpt
from chargen import prepare as prepare_module
from chargen.cli import main
from chargen.corpus import load_corpus
from chargen.errors import CheckpointError, CorpusError, DecodeError
from chargen.prepare import open_prepared, prepare
from chargen.tokenizer import build_tokenizer
from tests.conftest import TINY, make_text, run_chargen

DDP_FLAGS = [
    "--preset",
    "medium",  # a named preset: auto would probe each machine's speed
    "--steps",
    "30",
    "--hidden-size",
    "32",
    "--embed-dim",
    "8",
    "--batch-size",
    "8",
    "--seq-len",
    "16",
    "--eval-every",
    "10",
    "--checkpoint-every",
    "10",
    "--sample-length",
    "10",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks, so every chunk-boundary case of the streaming pass is exercised."""
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 997)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_prepare_equals_encoding_the_whole_text(tmp_path: Path, kind: str) -> None:
    files = tmp_path / "src"
    files.mkdir()
    (files / "a.txt").write_bytes(
        ("\ufeffΑλφα line\r\n" + make_text(5000, seed=1).replace("\n", "\r\n")).encode()
    )
    (files / "b.txt").write_bytes(("naïve café\r" * 300 + "end").encode())
    meta = prepare(str(files), tmp_path / "data", tokenizer=kind, lowercase=True, progress=False)
    data = open_prepared(tmp_path / "data")
    text = load_corpus(str(files), lowercase=True).text
    tok = build_tokenizer(kind, text)
    assert data.tokenizer.vocab == tok.vocab
    assert np.array_equal(np.asarray(data.ids), tok.encode(text))
    assert meta["tokens"] == len(data.ids) and meta["chars"] == len(text)
    assert meta["dtype"] == data.ids.dtype.name and isinstance(data.ids, np.memmap)
    assert meta["files"] == 2 and len(meta["source_sha256"]) == 64


def test_prepare_reports_the_exact_offset_of_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"a" * 2500 + b"\xe9" + b"b" * 10)
    with pytest.raises(DecodeError, match="offset 2500"):
        prepare(str(path), tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "meta.json").exists()
    prepare(str(path), tmp_path / "data", encoding="latin-1", progress=False)
    assert open_prepared(tmp_path / "data").meta["tokens"] == 2511


def test_prepare_refuses_overwrite_and_checks_tokens(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(make_text(3000), encoding="utf-8")
    prepare(str(path), tmp_path / "data", progress=False)
    with pytest.raises(CheckpointError, match="--overwrite"):
        prepare(str(path), tmp_path / "data", progress=False)
    tokens = tmp_path / "data" / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-10])
    with pytest.raises(CorpusError, match="truncated"):
        open_prepared(tmp_path / "data")
    (tmp_path / "blank.txt").write_text("  \n \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="whitespace"):
        prepare(str(tmp_path / "blank.txt"), tmp_path / "d2", progress=False)


def test_train_and_eval_read_a_prepared_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.txt"
    path.write_text(make_text(), encoding="utf-8")
    assert main(["prepare", str(path), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    result = chargen.train(str(tmp_path / "data"), tmp_path / "run", steps=40, **TINY)
    direct = chargen.train(str(path), tmp_path / "direct", steps=40, **TINY)
    assert result.best_val_nats_per_char == pytest.approx(direct.best_val_nats_per_char, rel=1e-6)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chars"] == result.val.chars
    assert chargen.resume(tmp_path / "run", steps=45).step == 45


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "chargen",
            "train",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _evals(run: Path) -> list[dict]:
    return [r for r in ckpt.MetricsLog(run).read() if r["kind"] == "eval"]


def test_two_gloo_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20_000), encoding="utf-8")
    (tmp_path / "runs").mkdir()
    ddp = _torchrun(str(corpus), "--out", str(tmp_path / "runs" / "ddp"), *DDP_FLAGS)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_chargen("train", str(corpus), "--out", str(tmp_path / "runs" / "one"), *DDP_FLAGS)
    assert single.returncode == 0, single.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "one"]
    a, b = _evals(tmp_path / "runs" / "ddp"), _evals(tmp_path / "runs" / "one")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [10, 20, 30]
    for x, y in zip(a, b, strict=True):
        assert x["val_nats_per_char"] == pytest.approx(y["val_nats_per_char"], rel=2e-3)
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=2e-3)
    assert ddp.stderr.count("done: step 30") == 1
    samples = [
        r for r in ckpt.MetricsLog(tmp_path / "runs" / "ddp").read() if r["kind"] == "sample"
    ]
    assert len(samples) == 4  # one set, written by rank 0 only

    # the two-process run resumes in one process, and a one-process run in two
    resumed = run_chargen(
        "train", "--out", str(tmp_path / "runs" / "ddp"), "--resume", "--steps", "40"
    )
    assert resumed.returncode == 0, resumed.stderr
    again = _torchrun("--out", str(tmp_path / "runs" / "one"), "--resume", "--steps", "40")
    assert again.returncode == 0, again.stderr[-3000:]
    for run in ("ddp", "one"):
        assert [r["step"] for r in _evals(tmp_path / "runs" / run)] == [10, 20, 30, 40]


def test_odd_batch_over_two_processes_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20_000), encoding="utf-8")
    flags = [f if f != "8" else "7" for f in DDP_FLAGS]
    proc = _torchrun(str(corpus), "--out", str(tmp_path / "run"), *flags)
    assert proc.returncode != 0 and "divisible by 2" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_gradient_accumulation_equals_a_larger_batch(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    common = {
        **TINY,
        "batching": "windows",
        "maxlen": 12,
        "optimizer": "sgd",
        "lr": 0.05,
        "grad_clip": 0.0,
        "dropout": 0.0,  # dropout masks depend on the batch shape
        "precision": "fp32",  # the sums are equal; bf16 rounds them differently
    }
    chargen.train(str(corpus), tmp_path / "big", steps=8, **{**common, "batch_size": 8})
    chargen.train(
        str(corpus), tmp_path / "acc", steps=8, **{**common, "batch_size": 4, "grad_accum": 2}
    )
    big = load_file(tmp_path / "big" / "model.safetensors")
    acc = load_file(tmp_path / "acc" / "model.safetensors")
    for key in big:
        np.testing.assert_allclose(big[key], acc[key], atol=1e-5, err_msg=key)
    meta = ckpt.load_trainer_state(tmp_path / "acc").meta
    assert meta["tokens_seen"] == 8 * 8


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this CPU build has no oneDNN bf16 kernels")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    result = chargen.train(str(corpus), tmp_path / "run", steps=60, precision="bf16", **TINY)
    evals = _evals(tmp_path / "run")
    assert evals[-1]["val_nats_per_char"] < evals[0]["val_nats_per_char"] - 0.3
    assert np.isfinite(result.best_val_nats_per_char)
    shutil.rmtree(tmp_path / "run")
