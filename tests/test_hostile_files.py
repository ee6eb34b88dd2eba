"""Hostile files: links in run and data folders, special and huge files, hostile config values,
deep JSON, odd names, an interrupted or half-written ``prepare``, weights of the wrong dtype.

Each refusal is one line on stderr and exit status 2, nothing outside the named folders is
touched and nothing half-written is left. Cases that would hang or eat memory without these
checks (a FIFO, ``/dev/zero``, 20 GB sparse files, a terabyte allocation) run in one child
process under an address-space limit, each with an alarm, so they fail instead of hurting the
machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from chargen import checkpoint as ckpt
from chargen import prepare as prepare_module
from chargen.atomic import available_memory
from chargen.cli import main
from chargen.config import ModelConfig, estimate_parameters
from chargen.errors import CheckpointError, CorpusError
from chargen.models import build_model, count_parameters
from chargen.prepare import open_prepared, prepare
from tests.conftest import TINY_FLAGS, make_text

QUICK = ["--steps", "3", *TINY_FLAGS, "--sample-length", "0"]
ADDRESS_LIMIT = 3 << 30  # bytes of address space for the child that runs the dangerous cases
CASE_SECONDS = 30  # alarm for one case in that child (a hang becomes a failure)
SPARSE = 20 << 30

# Runs each argv through chargen's main() in one process, so torch is imported once.
BATCH_SCRIPT = r"""
import contextlib, io, json, resource, signal, sys, traceback
limit, seconds = int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from chargen.cli import main

def alarm(*_):
    raise TimeoutError("the case ran past its time limit")

signal.signal(signal.SIGALRM, alarm)
results = {}
for name, argv in json.loads(open(sys.argv[1], encoding="utf-8").read()).items():
    err = io.StringIO()
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except BaseException:
        code = None
        err.write(traceback.format_exc())
    signal.alarm(0)
    results[name] = {"code": code, "stderr": err.getvalue()}
print(json.dumps(results))
"""


def _one_line(stderr: str) -> str:
    """The single error line of ``stderr`` (asserting there is exactly one, no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("chargen: error: "), stderr
    return lines[0]


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _edit_config(run: Path, section: str, key: str, value: Any) -> None:
    path = run / ckpt.CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config[section][key] = value
    path.write_text(json.dumps(config), encoding="utf-8")


def _deep_json(depth: int = 200_000) -> str:
    return "[" * depth + "]" * depth


def _safetensors_header(tensors: dict[str, tuple[str, list[int]]]) -> tuple[bytes, int]:
    """A safetensors header (length prefix included) for ``name -> (dtype, shape)`` of float32
    or other 4-byte tensors laid out one after another; returns it and the data size."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = 4 * int(torch.tensor(shape).prod()) if shape else 4
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, offset


# --------------------------------------------------------------------------- the dangerous cases
# name -> (argv with {placeholders}, text the one line must hold)
DANGEROUS: dict[str, tuple[list[str], str]] = {
    "train from a FIFO": (["train", "{fifo}", "--out", "{tmp}/out-fifo", *QUICK], "FIFO"),
    "prepare from a FIFO": (["prepare", "{fifo}", "--out", "{tmp}/data-fifo", "--quiet"], "FIFO"),
    "eval of a FIFO": (["eval", "{run}", "{fifo}"], "FIFO"),
    "weights that are a FIFO": (["generate", "{run-fifo-weights}", "--length", "5"], "FIFO"),
    "train from /dev/zero": (["train", "/dev/zero", "--out", "{tmp}/out-zero", *QUICK], "device"),
    "eval of /dev/zero": (["eval", "{run}", "/dev/zero"], "device"),
    "score of /dev/urandom": (["score", "{run}", "/dev/urandom"], "device"),
    "eval of a run trained on /dev/zero": (["eval", "{run-zero}"], "/dev/zero"),
    "resume of a run trained on /dev/zero": (
        ["train", "--out", "{run-zero}", "--resume", "--steps", "80"],
        "/dev/zero",
    ),
    "prepare from /dev/zero": (["prepare", "/dev/zero", "--out", "{tmp}/data-zero"], "device"),
    "corpus larger than memory": (
        ["train", "{huge.txt}", "--out", "{tmp}/out-huge", *QUICK],
        "chargen prepare",
    ),
    "20 GB sparse best.safetensors": (
        ["generate", "{run-padded}", "--length", "5"],
        "the file holds",
    ),
    "20 GB of zeros as best.safetensors": (["generate", "{run-zeros}", "--length", "5"], "header"),
    "header claiming a 40 GB tensor": (["generate", "{run-claims}", "--length", "5"], "shape"),
    "train on a half-written preparation": (
        ["train", "{half}", "--out", "{tmp}/out-half", *QUICK],
        "half-written",
    ),
    "eval of a half-written preparation": (["eval", "{run}", "{half}"], "half-written"),
    "train on a folder with a temporary of prepare": (
        ["train", "{partial-only}", "--out", "{tmp}/out-partial", *QUICK],
        "half-written",
    ),
    "deep JSON in config.json": (["generate", "{run-deep-config}"], "levels deep"),
    "deep JSON in tokenizer.json": (["generate", "{run-deep-tokenizer}"], "levels deep"),
    "deep JSON in meta.json": (["eval", "{run}", "{data-deep-meta}"], "levels deep"),
}

# config.json fields: (section, key, value, text the one line must hold besides config.json)
HOSTILE_CONFIG = [
    ("model", "hidden_size", 1e9, "hidden-size"),
    ("model", "hidden_size", 10**9, "hidden-size"),
    ("model", "num_layers", 1e6, "layers"),
    ("model", "num_layers", 10**6, "layers"),
    ("model", "embed_dim", 64.5, "embed_dim"),
    ("model", "vocab_size", True, "vocab_size"),
    ("model", "tie_weights", "yes", "tie_weights"),
    ("model", "family", ["lstm"], "family"),
    ("model", "context_size", 2**40, "context-size"),
    ("model", "hidden_size", 65536, "parameters"),
    ("train", "device", 5, "device"),
    ("train", "seed", "x", "seed"),
    ("train", "seed", -1, "seed"),
    ("train", "batch_size", 2**70, "batch-size"),
    ("train", "sample_temperatures", "hot", "sample_temperatures"),
    ("data", "encoding", 5, "encoding"),
    ("data", "max_vocab", 10**9, "max-vocab"),
]
for _section, _key, _value, _needle in HOSTILE_CONFIG:
    DANGEROUS[f"config {_section}.{_key} = {_value!r}"] = (
        ["generate", f"{{run-config-{_section}-{_key}-{_value!r}}}", "--length", "5"],
        _needle,
    )


def _build_dangerous(tmp: Path, run: Path) -> dict[str, str]:
    """The files and folders the dangerous cases name, by placeholder."""
    names = {"tmp": str(tmp), "run": str(run)}
    os.mkfifo(tmp / "fifo")
    names["fifo"] = str(tmp / "fifo")
    fifo_weights = _copy_run(run, tmp / "run-fifo-weights")
    (fifo_weights / ckpt.BEST).unlink()
    os.mkfifo(fifo_weights / ckpt.BEST)
    zero = _copy_run(run, tmp / "run-zero")
    _edit_config(zero, "data", "source", "/dev/zero")

    room = available_memory() or (64 << 30)
    with open(tmp / "huge.txt", "wb") as handle:  # sparse: costs no disk
        handle.write(b"the cat sees the moon.\n")
        handle.truncate(2 * room)

    weights = load_file(run / ckpt.BEST)
    padded = _copy_run(run, tmp / "run-padded")
    with open(padded / ckpt.BEST, "r+b") as handle:
        handle.truncate(SPARSE)
    zeros = _copy_run(run, tmp / "run-zeros")
    with open(zeros / ckpt.BEST, "wb") as handle:
        handle.truncate(SPARSE)
    claims = _copy_run(run, tmp / "run-claims")
    specs = {name: ("F32", list(t.shape)) for name, t in weights.items()}
    first = next(iter(specs))
    specs[first] = ("F32", [100_000, 100_000])
    header, data = _safetensors_header(specs)
    with open(claims / ckpt.BEST, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data)

    corpus = tmp / "good.txt"
    corpus.write_text(make_text(4000), encoding="utf-8")
    prepare(str(corpus), tmp / "half", progress=False)
    (tmp / "half" / prepare_module.META).unlink()  # as a prepare killed mid-commit leaves it
    partial_only = tmp / "partial-only"
    partial_only.mkdir()
    (partial_only / "notes.txt").write_text(make_text(4000), encoding="utf-8")
    (partial_only / ".tokens.bin.k3x9.partial").write_bytes(b"\x01" * 1000)
    prepare(str(corpus), tmp / "data-deep-meta", progress=False)
    (tmp / "data-deep-meta" / prepare_module.META).write_text(_deep_json(), encoding="utf-8")

    deep_config = _copy_run(run, tmp / "run-deep-config")
    (deep_config / ckpt.CONFIG).write_text(_deep_json(), encoding="utf-8")
    deep_tokenizer = _copy_run(run, tmp / "run-deep-tokenizer")
    (deep_tokenizer / ckpt.TOKENIZER).write_text(_deep_json(), encoding="utf-8")
    for i, (section, key, value, _) in enumerate(HOSTILE_CONFIG):
        hostile = _copy_run(run, tmp / f"run-config-{i}")
        _edit_config(hostile, section, key, value)
        names[f"run-config-{section}-{key}-{value!r}"] = str(hostile)
    for path in tmp.iterdir():
        names.setdefault(path.name, str(path))
    return names


@pytest.fixture(scope="module")
def dangerous(
    trained_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Every dangerous case run once, in one child process under an address-space limit."""
    tmp = tmp_path_factory.mktemp("hostile")
    names = _build_dangerous(tmp, trained_run)
    cases = {}
    for case, (argv, _) in DANGEROUS.items():
        filled = []
        for arg in argv:
            for key, value in names.items():
                arg = arg.replace("{" + key + "}", value)
            filled.append(arg)
        cases[case] = filled
    (tmp / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", BATCH_SCRIPT, str(tmp / "cases.json")]
        + [str(ADDRESS_LIMIT), str(CASE_SECONDS)],
        capture_output=True,
        text=True,
        timeout=CASE_SECONDS * len(cases) + 120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp, json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", list(DANGEROUS))
def test_one_line_and_nothing_written(
    case: str, dangerous: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    tmp, results = dangerous
    result = results[case]
    line = _one_line(result["stderr"])
    assert result["code"] == 2, result
    assert DANGEROUS[case][1] in line, line
    if case.startswith("config"):
        assert "config.json" in line, line
    for left in ("out-fifo", "data-fifo", "out-zero", "data-zero", "out-huge", "out-half"):
        assert not (tmp / left).exists(), left
    assert not (tmp / "out-partial").exists()


# --------------------------------------------------------------------------- links
def test_a_write_probe_link_is_not_followed(tmp_path: Path, corpus_file: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".chargen-write-test").symlink_to(victim)
    assert main(["train", str(corpus_file), "--out", str(run), *QUICK]) == 0
    assert victim.read_text(encoding="utf-8") == "precious\n"


def test_a_dangling_metrics_link_is_refused(
    tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / ckpt.METRICS).symlink_to(outside / "metrics.jsonl")
    assert main(["train", str(corpus_file), "--out", str(run), *QUICK]) == 2
    assert "symbolic link" in _one_line(capsys.readouterr().err)
    assert not list(outside.iterdir())
    assert sorted(p.name for p in run.iterdir()) == [ckpt.METRICS]
    # --overwrite removes the link itself and writes a real file
    assert main(["train", str(corpus_file), "--out", str(run), *QUICK, "--overwrite"]) == 0
    assert not list(outside.iterdir())
    assert (run / ckpt.METRICS).is_file() and not (run / ckpt.METRICS).is_symlink()


def test_metrics_are_never_appended_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    (tmp_path / ckpt.METRICS).symlink_to(target)
    with pytest.raises(CheckpointError, match="symbolic link"):
        ckpt.MetricsLog(tmp_path).append({"step": 1})
    assert not target.exists()


def test_prepare_never_writes_through_a_partial_link(tmp_path: Path, corpus_file: Path) -> None:
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    data = tmp_path / "data"
    data.mkdir()
    (data / ".tokens.bin.partial").symlink_to(victim)
    assert main(["prepare", str(corpus_file), "--out", str(data), "--quiet"]) == 0
    assert victim.read_bytes() == b"precious"
    assert open_prepared(data).meta["tokens"] == len(corpus_file.read_text(encoding="utf-8"))
    assert sorted(p.name for p in data.iterdir()) == ["meta.json", "tokenizer.json", "tokens.bin"]


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("dtype", [torch.float16, torch.int64, torch.bool])
def test_weights_of_another_dtype_are_refused(
    dtype: torch.dtype, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy_run(trained_run, tmp_path / "run")
    weights = load_file(run / ckpt.BEST)
    save_file({k: v.to(dtype) for k, v in weights.items()}, run / ckpt.BEST)
    assert main(["generate", str(run), "--length", "5"]) == 2
    line = _one_line(capsys.readouterr().err)
    name = ckpt.TORCH_DTYPES[dtype]
    assert f"dtype {name}" in line and "F32" in line and next(iter(weights)) in line, line


def test_a_header_longer_than_the_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        ckpt.read_safetensors(path)


# --------------------------------------------------------------------------- config bounds
@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(vocab_size=97, embed_dim=0, hidden_size=64, num_layers=2, layer_norm=True),
        ModelConfig(family="gru", vocab_size=50, embed_dim=16, hidden_size=32, tie_weights=True),
        ModelConfig(
            family="transformer", vocab_size=60, embed_dim=24, hidden_size=32, num_layers=2,
            context_size=16, positions="learned", tie_weights=True,
        ),
    ],
)  # fmt: skip
def test_the_parameter_estimate_is_exact(config: ModelConfig) -> None:
    assert estimate_parameters(config) == count_parameters(build_model(config))


# --------------------------------------------------------------------------- odd names
def test_a_source_name_that_is_not_utf8_trains_and_prepares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"corpus\xff.txt")
    with open(raw, "wb") as handle:
        handle.write(make_text().encode("utf-8"))
    name = os.fsdecode(raw)
    run = tmp_path / "run"
    assert main(["train", name, "--out", str(run), *QUICK]) == 0
    assert ckpt.load_config(run).data.source == name
    assert main(["eval", str(run), "--json"]) == 0
    assert main(["prepare", name, "--out", str(tmp_path / "data"), "--quiet"]) == 0
    assert open_prepared(tmp_path / "data").meta["source"] == name
    capsys.readouterr()


# --------------------------------------------------------------------------- prepare
@pytest.fixture(scope="module")
def slow_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 20 MB of text: a word-level prepare takes a few seconds over it."""
    path = tmp_path_factory.mktemp("slow") / "corpus.txt"
    path.write_text(make_text(1_000_000) * 20, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "signum, code, overwrite", [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)]
)
def test_an_interrupted_prepare_leaves_no_partial_files(
    slow_corpus: Path, tmp_path: Path, signum: int, code: int, overwrite: bool
) -> None:
    data = tmp_path / "nested" / "data"
    if overwrite:
        old = tmp_path / "old.txt"
        old.write_text(make_text(5000, seed=3), encoding="utf-8")
        prepare(str(old), data, progress=False)
    before = {p.name: p.read_bytes() for p in data.iterdir()} if overwrite else {}
    argv = ["prepare", str(slow_corpus), "--out", str(data), "--quiet", "--tokenizer", "word"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargen", *argv, *(["--overwrite"] if overwrite else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while proc.poll() is None and not list(data.glob(".tokens.bin*.partial")):
            time.sleep(0.005)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert ("SIGTERM" if signum == signal.SIGTERM else "SIGINT") in _one_line(err)
    if overwrite:
        assert {p.name: p.read_bytes() for p in data.iterdir()} == before
        assert open_prepared(data).meta["source"] == str(tmp_path / "old.txt")
    else:
        assert not (tmp_path / "nested").exists()


def test_a_source_that_changes_between_the_passes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.txt"
    path.write_text(make_text(3000), encoding="utf-8")
    real = prepare_module._Reader.chunks
    passes = []

    def changing(self: Any) -> Any:
        passes.append(1)
        for chunk in real(self):
            yield chunk if len(passes) == 1 else chunk.replace("cat", "cat☃")

    monkeypatch.setattr(prepare_module._Reader, "chunks", changing)
    with pytest.raises(CorpusError, match="changed while prepare read it") as info:
        prepare(str(path), tmp_path / "data", progress=False)
    assert "--unknown" not in str(info.value)
    assert not (tmp_path / "data").exists()
