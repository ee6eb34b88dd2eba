"""``chargen export --onnx`` and ``chargen generate --engine onnx`` (issue #20, item 1).

The graph is checked against chargen's own step on random states (logits within 1e-4), draws
the default engine's 1,000 tokens for a seed, holds no ONNX LSTM/GRU operator, and a hostile
or foreign ``.onnx`` is a one-line error with exit status 2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from chargen.cli import main as cli_main
from tests.conftest import TINY_FLAGS, make_text

HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs chargen[export] (onnx, onnxruntime)")

TRANSFORMER = ["--model", "transformer", "--hidden-size", "32", "--num-heads", "2"]
TRANSFORMER += ["--layers", "2", "--context-size", "16", "--seq-len", "16"]
RUNS = {
    # name: extra training flags (after TINY_FLAGS, so they win)
    "lstm": [],
    "lstm2": ["--layers", "2", "--tie-weights", "--layer-norm", "--dropout", "0.2"],
    "gru_word": ["--model", "gru", "--tokenizer", "word", "--layers", "2"],
    "gru_onehot": ["--model", "gru", "--embed-dim", "0", "--hidden-size", "24"],
    "transformer": TRANSFORMER,
    "transformer_learned_word": [
        *TRANSFORMER,
        "--positions",
        "learned",
        "--tokenizer",
        "word",
        "--tie-weights",
        "--embed-dim",
        "32",
    ],
}
PROMPTS = {"gru_word": "the cat", "transformer_learned_word": "a dog sees"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained runs of every family, each with RUN/model.onnx exported."""
    if not HAVE_ONNX:
        pytest.skip("needs chargen[export] (onnx, onnxruntime)")
    folder = tmp_path_factory.mktemp("onnx")
    corpus = folder / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = {}
    for name, flags in RUNS.items():
        run = folder / name
        args = ["train", str(corpus), "--out", str(run), "--steps", "12", *TINY_FLAGS, *flags]
        assert cli_main(args) == 0, name
        assert cli_main(["export", str(run)]) == 0, name
        out[name] = run
    return out


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI; assert exit status 2 and one stderr line, ``chargen: error: ...``."""
    code, _, err = cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("chargen: error: "), err
    assert "Traceback" not in err
    return lines[0]


def session_of(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------ the graph
@needs_onnx
@pytest.mark.parametrize("name", list(RUNS))
def test_graph_is_plain_opset_17_with_the_documented_interface(runs, name) -> None:
    import onnx

    from chargen.checkpoint import load_run
    from chargen.export_onnx import OPS, input_ports, output_ports

    proto = onnx.load(str(runs[name] / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    assert min(o.version for o in proto.opset_import) >= 17
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"LSTM", "GRU", "RNN", "Loop", "If", "Scan", "LayerNormalization"}
    assert ops <= OPS
    config, _, _ = load_run(runs[name])
    assert [i.name for i in proto.graph.input] == [p.name for p in input_ports(config.model)]
    assert [o.name for o in proto.graph.output] == [p.name for p in output_ports(config.model)]
    expected_state = {"lstm": "h,c", "gru": "h", "transformer": "k,v,pos"}.get(config.model.family)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["chargen.state"] == (
        expected_state if config.model.positions == "rotary" else "pos,tokens"
    )


@needs_onnx
@pytest.mark.parametrize("name", list(RUNS))
def test_logits_and_state_match_chargen_on_random_states(runs, name) -> None:
    from chargen.checkpoint import load_run
    from chargen.export_onnx import onnx_state, random_states, state_ports

    _, tokenizer, model = load_run(runs[name])
    session = session_of(runs[name] / "model.onnx")
    for seed in range(3):
        state = random_states(model, rows=6, seed=seed)
        ids = torch.randint(
            0, tokenizer.vocab_size, (6,), generator=torch.Generator().manual_seed(seed)
        )
        feeds = {"ids": ids.numpy()}
        for port, tensor in zip(state_ports(model.config), onnx_state(model, state), strict=True):
            feeds[port.name] = tensor.numpy().copy()
        got = session.run(None, feeds)
        with torch.inference_mode():
            logits, new_state = model(ids[:, None], tuple(s.clone() for s in state))
        want = [logits[:, -1], *onnx_state(model, new_state)]
        assert len(got) == len(want)
        np.testing.assert_allclose(got[0], want[0].numpy(), rtol=0, atol=1e-4)
        for g, w in zip(got[1:], want[1:], strict=True):
            if w.dtype == torch.long:
                np.testing.assert_array_equal(g, w.numpy())
            else:
                np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-4)


@needs_onnx
def test_rotary_graph_follows_the_ring_past_the_context(runs) -> None:
    """Step 40 tokens (context 16) through the graph and through chargen from empty states."""
    from chargen.checkpoint import load_run

    _, tokenizer, model = load_run(runs["transformer"])
    session = session_of(runs["transformer"] / "model.onnx")
    ids = torch.randint(
        0, tokenizer.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1)
    )
    state = model.initial_state(3)
    feeds = {n: s.numpy().copy() for n, s in zip(("k", "v", "pos"), state, strict=True)}
    with torch.inference_mode():
        for t in range(40):
            logits, state = model(ids[:, t : t + 1], state)
            out = session.run(None, {"ids": ids[:, t].numpy(), **feeds})
            feeds = dict(zip(("k", "v", "pos"), out[1:], strict=True))
            np.testing.assert_allclose(out[0], logits[:, -1].numpy(), rtol=0, atol=1e-4)
    assert feeds["pos"].tolist() == [[40, 40, 40]]


# ------------------------------------------------------------------------------ generation
def token_ids(jsonl: str) -> list[int]:
    return [json.loads(line)["id"] for line in jsonl.splitlines() if line.strip()]


@needs_onnx
@pytest.mark.parametrize("name", list(RUNS))
def test_onnx_engine_draws_the_default_engines_1000_tokens(runs, name, capsys) -> None:
    common = ["generate", runs[name], "--length", "1000", "--seed", "11"]
    common += ["--temperature", "0.8", "--format", "jsonl", "--prompt", PROMPTS.get(name, "the ")]
    code, default, _ = cli(capsys, *common)
    assert code == 0
    code, onnx_out, err = cli(capsys, *common, "--engine", "onnx")
    assert code == 0, err
    tokens = token_ids(default)
    assert len(tokens) == 1000
    assert token_ids(onnx_out) == tokens


@needs_onnx
def test_onnx_engine_batches_and_beams_like_the_default(runs, capsys) -> None:
    run = runs["transformer"]
    args = ["generate", run, "--length", "30", "--seed", "5", "--prompt", "the "]
    args += ["--num-samples", "3", "--stop", "."]
    code, default, _ = cli(capsys, *args)
    assert code == 0
    code, onnx_out, err = cli(capsys, *args, "--engine", "onnx")
    assert code == 0, err
    assert onnx_out == default
    args = ["generate", run, "--length", "12", "--beams", "3", "--num-samples", "3"]
    args += ["--format", "jsonl"]
    code, default, _ = cli(capsys, *args)
    assert code == 0
    code, onnx_out, err = cli(capsys, *args, "--engine", "onnx")
    assert code == 0, err
    want = [json.loads(line) for line in default.splitlines()]
    got = [json.loads(line) for line in onnx_out.splitlines()]
    assert [b["text"] for b in got] == [b["text"] for b in want] and len(want) == 3
    assert [b["score"] for b in got] == pytest.approx([b["score"] for b in want], abs=1e-4)


@needs_onnx
def test_onnx_engine_on_a_lines_run(tmp_path, capsys) -> None:
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(["anna", "bob", "carla", "dieter", "eve", "fritz"] * 40) + "\n")
    run = tmp_path / "run"
    args = ["train", corpus, "--out", run, "--lines", "--steps", "8", *TINY_FLAGS]
    assert cli(capsys, *args)[0] == 0
    assert cli(capsys, "export", run, "--onnx", tmp_path / "names.onnx")[0] == 0
    args = ["generate", run, "--num-samples", "20", "--seed", "3", "--length", "30"]
    code, default, _ = cli(capsys, *args)
    assert code == 0
    code, onnx_out, err = cli(
        capsys, *args, "--engine", "onnx", "--onnx-model", tmp_path / "names.onnx"
    )
    assert code == 0, err
    assert onnx_out == default and len(default.splitlines()) == 20


# ------------------------------------------------------------------------------ hostile files
def edited(runs: dict[str, Path], tmp_path: Path, edit: Any, name: str = "lstm") -> Path:
    """RUN/model.onnx of run ``name`` after ``edit(proto)``, written to a new file."""
    import onnx

    proto = onnx.load(str(runs[name] / "model.onnx"))
    edit(proto)
    path = tmp_path / "edited.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def rename_input(proto: Any, old: str, new: str) -> None:
    for value in proto.graph.input:
        if value.name == old:
            value.name = new
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def set_logits_vocab(proto: Any, size: int) -> None:
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = size


def set_prop(proto: Any, key: str, value: str) -> None:
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = value


def add_foreign_op(proto: Any) -> None:
    import onnx

    proto.graph.node.append(onnx.helper.make_node("Evil", ["ids"], ["x"], domain="evil.ops"))
    proto.opset_import.append(onnx.helper.make_opsetid("evil.ops", 1))


def add_loop(proto: Any) -> None:
    import onnx

    body = onnx.helper.make_graph([], "body", [], [])
    proto.graph.node.append(onnx.helper.make_node("Loop", ["", ""], ["y"], body=body))


def external_weights(proto: Any) -> None:
    import onnx

    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"


HOSTILE_EDITS = {
    "renamed input": (lambda p: rename_input(p, "h", "hidden"), "its inputs are 'ids', 'hidden'"),
    "wrong vocabulary size": (lambda p: set_logits_vocab(p, 99999), "logits over 99999 tokens"),
    "another vocabulary": (
        lambda p: set_prop(p, "chargen.vocab_sha256", "0" * 64),
        "another vocabulary",
    ),
    "another family": (lambda p: set_prop(p, "chargen.family", "gru"), "from a gru run"),
    "foreign operator": (add_foreign_op, "evil.ops"),
    "control flow": (add_loop, "'Loop' operator"),
    "external data": (external_weights, "outside the file"),
    "old opset": (lambda p: setattr(p.opset_import[0], "version", 11), "opset 11"),
}


@needs_onnx
@pytest.mark.parametrize("case", list(HOSTILE_EDITS))
def test_a_hostile_or_foreign_graph_is_one_line(runs, tmp_path, capsys, case) -> None:
    edit, message = HOSTILE_EDITS[case]
    path = edited(runs, tmp_path, edit)
    line = one_line_error(
        capsys, "generate", runs["lstm"], "--engine", "onnx", "--onnx-model", path, "--length", "5"
    )
    assert message in line


@needs_onnx
def test_a_graph_of_another_run_is_one_line(runs, capsys) -> None:
    base = ["generate", runs["lstm"], "--engine", "onnx", "--length", "5", "--onnx-model"]
    line = one_line_error(capsys, *base, runs["lstm2"] / "model.onnx")
    assert "h has shape (2, batch, 48)" in line
    line = one_line_error(capsys, *base, runs["gru_word"] / "model.onnx")
    assert "from a gru run" in line
    line = one_line_error(capsys, *base, runs["transformer"] / "model.onnx")
    assert "from a transformer run" in line


@needs_onnx
def test_files_that_are_not_onnx_graphs_are_one_line(runs, tmp_path, capsys) -> None:
    base = ["generate", runs["lstm"], "--engine", "onnx", "--length", "5", "--onnx-model"]
    text = tmp_path / "text.onnx"
    text.write_text("hello, I am not a model\n")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    half = tmp_path / "half.onnx"
    data = (runs["lstm"] / "model.onnx").read_bytes()
    half.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as handle:  # sparse: nothing is written or read
        handle.truncate(50 * 2**30)
    for path in (text, noise, half, empty):
        one_line_error(capsys, *base, path)
    assert "more than the" in one_line_error(capsys, *base, huge)
    assert "no such file" in one_line_error(capsys, *base, tmp_path / "missing.onnx")
    assert "folder" in one_line_error(capsys, *base, tmp_path)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.onnx"
        os.mkfifo(fifo)
        assert "FIFO" in one_line_error(capsys, *base, fifo)


@needs_onnx
def test_a_graph_of_other_weights_is_a_warning(runs, tmp_path, capsys) -> None:
    path = edited(runs, tmp_path, lambda p: set_prop(p, "chargen.weights_sha256", "0" * 64))
    code, out, err = cli(
        capsys, "generate", runs["lstm"], "--engine", "onnx", "--onnx-model", path,
        "--length", "5", "--seed", "1",
    )  # fmt: skip
    assert code == 0 and out
    assert "chargen: warning:" in err and "other weights" in err


@needs_onnx
def test_engine_flag_combinations(runs, capsys) -> None:
    run = runs["lstm"]
    assert "goes with --engine onnx" in one_line_error(
        capsys, "generate", run, "--onnx-model", run / "model.onnx"
    )
    assert "--beams" in one_line_error(capsys, "generate", run, "--engine", "torch", "--beams", "2")
    assert "numpy engine" in one_line_error(
        capsys, "generate", runs["transformer"], "--engine", "numpy", "--length", "5"
    )
    code, _, err = cli(capsys, "generate", run, "--engine", "torch", "--length", "5", "--seed", "1")
    assert code == 0, err


# ------------------------------------------------------------------------------ without the extra
@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_a_missing_extra_is_one_line(trained_run, tmp_path, capsys, monkeypatch, module) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    line = one_line_error(capsys, "export", trained_run, "--onnx", tmp_path / "m.onnx")
    assert "pip install 'chargen[export]'" in line
    line = one_line_error(capsys, "generate", trained_run, "--engine", "onnx")
    assert "pip install 'chargen[export]'" in line
    assert not (tmp_path / "m.onnx").exists()


@needs_onnx
def test_export_refuses_a_missing_run_and_writes_where_told(runs, tmp_path, capsys) -> None:
    assert "no such run folder" in one_line_error(capsys, "export", tmp_path / "nope")
    code, out, err = cli(capsys, "export", runs["gru_word"], "--onnx", tmp_path / "g.onnx")
    assert code == 0 and not out
    assert "wrote" in err and "opset 17" in err
    assert (tmp_path / "g.onnx").read_bytes()[:2]  # written


# ------------------------------------------------------------------------------ int8
@needs_onnx
@pytest.mark.parametrize("name", list(RUNS))
def test_int8_graphs_of_every_family_are_checked_and_plain(runs, name, tmp_path, capsys) -> None:
    """--quantize int8: int8 matrices behind DequantizeLinear (no integer kernels, no foreign
    domain), checked against chargen with the same rounded weights; --engine onnx runs them."""
    import onnx

    from chargen.export_onnx import OPS

    path = tmp_path / "int8.onnx"
    code, _, err = cli(capsys, "export", runs[name], "--onnx", path, "--quantize", "int8")
    assert code == 0, err
    assert "int8 weights" in err and "same int8 weights" in err
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert "DequantizeLinear" in ops and ops <= OPS
    assert not ops & {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul"}
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    int8 = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert sum(np.prod(t.dims) for t in int8) > 3 * sum(np.prod(t.dims) for t in floats)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["chargen.quantize"] == "int8"
    float_props = {p.key: p.value for p in onnx.load(str(runs[name] / "model.onnx")).metadata_props}
    assert props["chargen.weights_sha256"] == float_props["chargen.weights_sha256"]
    args = ["generate", runs[name], "--length", "40", "--seed", "2", "--prompt"]
    args += [PROMPTS.get(name, "the "), "--engine", "onnx", "--onnx-model", path]
    code, out, err = cli(capsys, *args)
    assert code == 0 and out.strip(), err
    assert "warning" not in err


@needs_onnx
def test_int8_is_a_quarter_of_the_size_at_the_same_loss(tmp_path, capsys) -> None:
    """A model of width 256: the int8 file is >= 3.5x smaller than the float one, and its
    validation bits/char (chargen eval --engine onnx) within 1% of the float graph's."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", corpus, "--out", run, "--steps", "60", *TINY_FLAGS]
    args += ["--hidden-size", "256", "--seq-len", "64", "--lr", "5e-3", "--sample-length", "0"]
    assert cli(capsys, *args)[0] == 0
    paths = {"float": tmp_path / "float.onnx", "int8": tmp_path / "int8.onnx"}
    assert cli(capsys, "export", run, "--onnx", paths["float"])[0] == 0
    assert cli(capsys, "export", run, "--onnx", paths["int8"], "--quantize", "int8")[0] == 0
    ratio = paths["float"].stat().st_size / paths["int8"].stat().st_size
    assert ratio >= 3.5, ratio
    bits = {}
    for kind, path in paths.items():
        code, out, err = cli(
            capsys, "eval", run, "--engine", "onnx", "--onnx-model", path, "--json"
        )
        assert code == 0, err
        bits[kind] = json.loads(out)["bits_per_char"]
    code, out, _ = cli(capsys, "eval", run, "--json")
    assert code == 0
    assert bits["float"] == pytest.approx(json.loads(out)["bits_per_char"], rel=1e-5)
    assert abs(bits["int8"] - bits["float"]) <= 0.01 * bits["float"], bits


# ------------------------------------------------------------------------------ eval --engine onnx
@needs_onnx
@pytest.mark.parametrize("name", ["lstm", "transformer", "transformer_learned_word"])
def test_eval_through_the_graph_equals_evals(runs, name, capsys) -> None:
    code, out, err = cli(capsys, "eval", runs[name], "--json")
    assert code == 0, err
    want = json.loads(out)
    code, out, err = cli(capsys, "eval", runs[name], "--json", "--engine", "onnx")
    assert code == 0, err
    got = json.loads(out)
    assert got["bits_per_char"] == pytest.approx(want["bits_per_char"], rel=1e-5)
    assert got["chars"] == want["chars"]


@needs_onnx
def test_eval_through_the_graph_of_a_lines_run(tmp_path, capsys) -> None:
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(["anna", "bob", "carla", "dieter", "eve", "fritz"] * 40) + "\n")
    run = tmp_path / "run"
    assert (
        cli(capsys, "train", corpus, "--out", run, "--lines", "--steps", "8", *TINY_FLAGS)[0] == 0
    )
    assert cli(capsys, "export", run)[0] == 0
    code, out, _ = cli(capsys, "eval", run, "--json")
    assert code == 0
    code, onnx_out, err = cli(capsys, "eval", run, "--json", "--engine", "onnx")
    assert code == 0, err
    assert json.loads(onnx_out)["bits_per_char"] == pytest.approx(
        json.loads(out)["bits_per_char"], rel=1e-5
    )


@needs_onnx
def test_eval_engine_flags(runs, tmp_path, capsys) -> None:
    run = runs["lstm"]
    assert "goes with --engine onnx" in one_line_error(
        capsys, "eval", run, "--onnx-model", run / "model.onnx"
    )
    assert "no such file" in one_line_error(
        capsys, "eval", run, "--engine", "onnx", "--onnx-model", tmp_path / "none.onnx"
    )
    assert "from a gru run" in one_line_error(
        capsys, "eval", run, "--engine", "onnx", "--onnx-model", runs["gru_word"] / "model.onnx"
    )
