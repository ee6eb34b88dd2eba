"""``chargen generate RUN --engine onnx``: generation through the graph of ``chargen export``.

``OnnxStepModel`` runs the exported one-token step (``export_onnx``) with onnxruntime behind
chargen's model interface: ``model(ids (B, T), state) -> (logits (B, T, V), state)`` (T steps
of the graph), ``initial_state`` and ``head.weight`` (the device and dtype generation reads).
So ``generate``, ``generate_items`` and ``beam_generate`` run it unchanged: the torch loop
draws from its logits with the same uniforms and the same sampling rules, and a seed gives
the tokens the default engine gives, up to float32 rounding of the logits (about 1e-7).

``open_onnx_engine`` checks the file before onnxruntime reads it: a regular file no larger
than the run's float32 weights plus 16 MiB, an ONNX model of opset >= 17 made only of the
operators chargen's graphs use (no control flow, no custom operators, no external data
files), whose inputs and outputs are those of this run's step graph (names, types, shapes,
vocabulary size) and whose ``chargen.family`` / ``chargen.vocab_sha256`` metadata, when
present, match the run. An int8 graph (``export --quantize int8``) is read the same way; its
``DequantizeLinear`` nodes are folded into float32 weights when the session loads, so it runs
at the float graph's speed. Then it runs one step and checks what comes back. Anything else is a
one-line CheckpointError (exit status 2). A graph exported from other weights of the same
model (before more training, or ``--weights last``) draws a warning.
"""

from __future__ import annotations

import os
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chargen.atomic import read_regular
from chargen.errors import CheckpointError, GenerationError
from chargen.export_onnx import (
    OPS,
    OPSET,
    Port,
    input_ports,
    output_ports,
    require_onnx,
    state_ports,
    vocab_digest,
    weights_digest,
)
from chargen.models import LanguageModel, State, count_parameters
from chargen.tokenizer import Tokenizer

SLACK_BYTES = 16 * 2**20  # names, shapes and constants on top of the weights
DEFAULT_NAME = "model.onnx"
_DTYPES = {"float32": np.float32, "int64": np.int64}


def max_onnx_bytes(model: LanguageModel) -> int:
    """The largest ``.onnx`` file accepted for ``model``: its float32 weights plus slack."""
    return 4 * count_parameters(model) + SLACK_BYTES


class OnnxStepModel(torch.nn.Module):
    """An onnxruntime session of a step graph behind chargen's model interface (CPU, float32)."""

    def __init__(self, session: Any, config: Any, path: str) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.path = path
        self.ports = state_ports(config)
        self.names = [p.name for p in self.ports]
        self.output_names = [p.name for p in output_ports(config)]
        self._expected: dict[int, list[Port]] = {}  # output shapes by batch size
        # generation reads the device and dtype of its inputs from ``head.weight``
        self.head = types.SimpleNamespace(weight=torch.empty(0, dtype=torch.float32))
        self.eval()

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """Zeros in every state input: nothing read yet."""
        return tuple(
            torch.zeros(_shape(p, batch_size), dtype=getattr(torch, p.dtype)) for p in self.ports
        )

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Step through the T ids of each row; logits (B, T, V) and the state after them."""
        rows, steps = ids.shape
        if state is None:
            state = self.initial_state(rows)
        arrays = [np.ascontiguousarray(s.detach().cpu().numpy()) for s in state]
        tokens = ids.detach().cpu().numpy().astype(np.int64)
        logits = []
        for t in range(steps):
            feeds = dict(zip(self.names, arrays, strict=True))
            feeds["ids"] = np.ascontiguousarray(tokens[:, t])
            outputs = self._run(feeds)
            self._check(outputs, rows)
            logits.append(outputs[0])
            arrays = outputs[1:]
        if steps == 1:
            out = torch.from_numpy(logits[0][:, None])
        elif logits:
            out = torch.from_numpy(np.stack(logits, axis=1))
        else:
            out = torch.zeros((rows, 0, self.config.vocab_size), dtype=torch.float32)
        return out, tuple(torch.from_numpy(a) for a in arrays)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self.output_names, feeds)
        except Exception as exc:  # onnxruntime's own exception types
            raise GenerationError(f"{self.path}: onnxruntime failed: {_first_line(exc)}") from None

    def _check(self, outputs: list[Any], rows: int) -> None:
        """GenerationError unless the step returned logits (rows, V) and states as fed."""
        if rows not in self._expected:
            self._expected = {
                rows: [Port("logits", (rows, self.config.vocab_size), "float32")]
                + [Port(p.name + "_out", _shape(p, rows), p.dtype) for p in self.ports]
            }
        for port, out in zip(self._expected[rows], outputs, strict=True):
            if (
                not isinstance(out, np.ndarray)
                or out.shape != port.shape
                or out.dtype != _DTYPES[port.dtype]
            ):
                got = f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray) else "?"
                raise GenerationError(
                    f"{self.path}: the graph returned {port.name} as {got}, not "
                    f"{port.dtype}{list(port.shape)}"
                )


def default_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / DEFAULT_NAME


def open_onnx_engine(
    path: str | os.PathLike[str], model: LanguageModel, tokenizer: Tokenizer
) -> OnnxStepModel:
    """The step graph at ``path`` for the run of ``model`` and ``tokenizer``, checked (module
    notes); one-line CheckpointError when it is not this run's graph or not usable."""
    onnx, ort = require_onnx()
    name = str(path)
    if not os.path.lexists(path):
        raise CheckpointError(
            f"{name}: no such file; write it with: chargen export RUN --onnx {name}"
        )
    data = read_regular(path, CheckpointError, max_onnx_bytes(model))
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and kin
        raise CheckpointError(f"{name}: not an ONNX model ({_first_line(exc)})") from None
    _check_model(onnx, proto, name, model.config, tokenizer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    # int8 graphs: fold each weight's DequantizeLinear into a float matrix once, at load
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CheckpointError(f"{name}: onnxruntime cannot load it: {_first_line(exc)}") from None
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    want = (
        [p.name for p in input_ports(model.config)],
        [p.name for p in output_ports(model.config)],
    )
    if names != want:  # the graph was checked, so this is onnxruntime disagreeing
        raise CheckpointError(f"{name}: onnxruntime sees inputs/outputs {names}, not {want}")
    engine = OnnxStepModel(session, model.config, name)
    try:
        engine(torch.zeros((1, 1), dtype=torch.long), engine.initial_state(1))
    except GenerationError as exc:
        raise CheckpointError(str(exc)) from None
    props = {p.key: p.value for p in proto.metadata_props}
    stored = props.get("chargen.weights_sha256")
    if stored is not None and stored != weights_digest(model):
        warnings.warn(
            f"{name} was exported from other weights than the run's (before more training, or "
            "from the other weights file); export it again to generate from these",
            stacklevel=2,
        )
    return engine


# --------------------------------------------------------------------------- checks
def _check_model(onnx: Any, proto: Any, name: str, config: Any, tokenizer: Tokenizer) -> None:
    """CheckpointError unless ``proto`` is a plain step graph with this run's interface."""
    graph = proto.graph
    hint = f"export it from this run: chargen export RUN --onnx {name}"
    if not graph.node or not graph.output:
        raise CheckpointError(f"{name}: not an ONNX model (no graph); {hint}")
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    foreign = sorted(set(opsets) - {"ai.onnx"})
    if foreign:
        raise CheckpointError(f"{name}: uses operators of the domain {foreign[0]!r}; {hint}")
    if opsets.get("ai.onnx", 0) < OPSET:
        raise CheckpointError(
            f"{name}: opset {opsets.get('ai.onnx', 0)}, older than {OPSET}; {hint}"
        )
    if len(proto.functions):
        raise CheckpointError(f"{name}: defines functions; chargen's graphs have none; {hint}")
    external = onnx.TensorProto.EXTERNAL
    if any(t.data_location == external for t in graph.initializer) or len(graph.sparse_initializer):
        raise CheckpointError(f"{name}: keeps weights outside the file; {hint}")
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
            raise CheckpointError(
                f"{name}: has a {node.op_type!r} operator, which chargen's step graphs do not "
                f"use; {hint}"
            )
        for attr in node.attribute:
            if (
                attr.g.node
                or attr.graphs
                or (attr.t.data_location == external)
                or any(t.data_location == external for t in attr.tensors)
            ):
                raise CheckpointError(f"{name}: has a subgraph or outside data; {hint}")
    props = {p.key: p.value for p in proto.metadata_props}
    family = props.get("chargen.family")
    if family is not None and family != config.family:
        raise CheckpointError(
            f"{name}: exported from a {family} run, this run is a {config.family}"
        )
    initializers = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializers]
    _check_ports(onnx, name, "inputs", inputs, input_ports(config), config, hint)
    _check_ports(onnx, name, "outputs", list(graph.output), output_ports(config), config, hint)
    digest = props.get("chargen.vocab_sha256")
    if digest is not None and digest != vocab_digest(tokenizer):
        raise CheckpointError(f"{name}: exported with another vocabulary than this run's ({hint})")


def _check_ports(
    onnx: Any, name: str, kind: str, values: list[Any], ports: list[Port], config: Any, hint: str
) -> None:
    got = [v.name for v in values]
    want = [p.name for p in ports]
    if got != want:
        shown = ", ".join(_short(n) for n in got[:8]) + (", ..." if len(got) > 8 else "")
        family = {"lstm": "an LSTM", "gru": "a GRU"}.get(config.family, "a transformer")
        raise CheckpointError(
            f"{name}: its {kind} are {shown or 'none'}; {family} run's step graph has "
            f"{', '.join(want)} ({hint})"
        )
    kinds = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    for value, port in zip(values, ports, strict=True):
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else "batch" for d in tensor.shape.dim]
        if tensor.elem_type != kinds[port.dtype] or not tensor.HasField("shape"):
            raise CheckpointError(f"{name}: {port.name} is not a {port.dtype} tensor ({hint})")
        if port.name == "logits" and len(dims) == 2 and dims[1] != config.vocab_size:
            raise CheckpointError(
                f"{name}: logits over {dims[1]} tokens, but the run's vocabulary has "
                f"{config.vocab_size} (exported from another run?)"
            )
        if dims != list(port.shape):
            shape = "(" + ", ".join(str(d) for d in dims) + ")"
            raise CheckpointError(
                f"{name}: {port.name} has shape {shape}, this run's step graph needs "
                f"({', '.join(str(d) for d in port.shape)}) ({hint})"
            )


def _shape(port: Port, rows: int) -> tuple[int, ...]:
    return tuple(rows if d == "batch" else int(d) for d in port.shape)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 300 else line[:300] + "..."
