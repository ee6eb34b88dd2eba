"""``chargen export RUN --onnx model.onnx``: the model's one-token step as an ONNX graph.

The graph reads one token per row and the state, and returns the next-token logits and the
new state: what ``chargen generate`` computes for each new token, so any ONNX runtime can
generate (sampling is left to the caller). It is written node by node with ``onnx.helper``
(no PyTorch exporter) from plain operators: MatMul/Gemm, Gather, Sigmoid, Tanh, Softmax, Erf,
Cos/Sin, elementwise arithmetic and shape operators; no ONNX LSTM, GRU, LayerNormalization or
attention operator and no control flow, so runtimes without those (onnxjs failed on LSTM/GRU)
load it. Opset 17, IR version 8 (ONNX 1.12, the oldest that has opset 17), float32 weights,
dropout off. The batch dimension is dynamic (``batch``); the others are fixed by the run.

Inputs and outputs (L layers, H hidden size or model width, V vocabulary, C context size,
N heads, D = H / N; ``h_out`` is the new ``h``, and so on):

| name     | shape               | type    | meaning                                                      |
|----------|---------------------|---------|--------------------------------------------------------------|
| `ids`    | (batch,)            | int64   | the token each row reads                                     |
| `h`      | (L, batch, H)       | float32 | LSTM, GRU: hidden state of each layer                        |
| `c`      | (L, batch, H)       | float32 | LSTM: cell state of each layer                               |
| `k`      | (L, batch, N, C, D) | float32 | Transformer (rotary): rotated keys, position p in slot p % C |
| `v`      | (L, batch, N, C, D) | float32 | Transformer (rotary): values, in the same slots              |
| `pos`    | (1, batch)          | int64   | Transformer: how many tokens each row has read               |
| `tokens` | (1, batch, C)       | int64   | Transformer (learned positions): the last C ids, slot p % C  |
| `logits` | (batch, V)          | float32 | output: next-token scores (before softmax)                   |
| `*_out`  | as the input        | as it   | output: each state input after reading `ids` (`h_out`, ...)  |

Start from zeros in every state input (``pos`` 0: nothing read yet); feed each ``*_out`` back
as the next step's input of the same name. To continue a prompt, step through its tokens and
sample from the logits of the last one. LSTM inputs are ``ids, h, c``, GRU ``ids, h``,
rotary Transformer ``ids, k, v, pos``, learned-positions Transformer ``ids, pos, tokens``.

The Transformer attends over the last C positions, the new token included (a sliding window
over a ring buffer: the new key and value overwrite the slot of position ``pos - C``), as
chargen's cached step does. With learned (absolute) positions chargen re-reads the last C
ids from scratch once a row has read C tokens; the graph always does that (before the window
is full the re-read equals the cached step), so its state is the token ring and no KV cache.

The model's metadata (``metadata_props``) holds ``chargen.family``, ``chargen.vocab_size``,
``chargen.vocab_sha256`` (of the run's vocabulary, checked by ``--engine onnx``),
``chargen.weights_sha256`` (of the weights, ``--engine onnx`` warns when they are not the run's),
``chargen.state`` (the state input names in order), ``chargen.quantize`` (``int8`` or empty)
and ``chargen.version``.

``quantize="int8"`` (``chargen export --quantize int8``) stores every weight matrix as int8
with one float32 scale per row (symmetric: ``w ~ scale * q``, ``q`` in [-127, 127], ``scale =
max |row| / 127``) and dequantizes it in the graph with the standard ``DequantizeLinear``
(``axis=0``, no zero point) in front of the Gemm/MatMul that uses it; an embedding lookup
gathers the int8 rows and their scales and multiplies. Weight-only: activations stay float32,
so every runtime that has ``DequantizeLinear`` (opset 13) runs it (onnxruntime-web's wasm
backend included) and the result does not depend on the CPU's integer kernels. Vectors
(biases, LayerNorm) stay float32. The file is about a quarter of the float one; the graph is
checked against chargen's step computed with the same rounded weights (within 1e-4).

This module builds, checks and serializes the graph; the parts live next to it, one job each:
``onnx_ports.py`` (the inputs, outputs and digests above), ``onnx_graph.py`` (the nodes, per
family), ``onnx_int8.py`` (the int8 rounding) and ``onnx_check.py`` (the parity check). Their
public names are importable from here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from chargen.errors import ConfigError
from chargen.models import LanguageModel, RNNLanguageModel, TransformerLanguageModel
from chargen.onnx_check import parity
from chargen.onnx_check import random_states as random_states
from chargen.onnx_graph import _Graph, _learned, _rnn, _rotary
from chargen.onnx_int8 import quantize_rows as quantize_rows
from chargen.onnx_int8 import rounded_model
from chargen.onnx_ports import (
    Port,
    input_ports,
    output_ports,
    state_ports,
    vocab_digest,
    weights_digest,
)
from chargen.onnx_ports import onnx_state as onnx_state
from chargen.tokenizer import Tokenizer

OPSET = 17
IR_VERSION = 8  # ONNX 1.12: the first release with opset 17; older runtimes read it
FORMAT = "chargen-step-1"
MAX_PROTO_BYTES = 2**31 - 2**24  # one protobuf message holds less than 2 GiB
INSTALL_HINT = "pip install 'chargen[export]'"
#: the operators chargen's graphs are made of; the onnx engine runs nothing else
OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Sqrt", "Erf", "Tanh", "Sigmoid", "Softmax", "Cos", "Sin",
        "MatMul", "Gemm", "Gather", "GatherElements", "GatherND", "ReduceMean", "Reshape",
        "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Cast", "Where", "Equal",
        "LessOrEqual", "Mod", "Max", "Min", "Constant", "Identity", "DequantizeLinear",
    }
)  # fmt: skip
QUANTIZE = ("int8",)
"""``--quantize`` choices: int8 weights (see the module notes)."""


def require_onnx() -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxruntime`` modules, or a one-line ConfigError naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export and --engine onnx need onnx and onnxruntime ({exc.name or exc} is "
            f"missing): {INSTALL_HINT}"
        ) from None
    return onnx, onnxruntime


# --------------------------------------------------------------------------- export
def build_onnx(model: LanguageModel, tokenizer: Tokenizer, quantize: str | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``model``'s one-token step (checked by ``onnx.checker``);
    ``quantize="int8"``: int8 weight matrices (module notes)."""
    return _build(model, tokenizer, quantize)[0]


def _build(
    model: LanguageModel, tokenizer: Tokenizer, quantize: str | None
) -> tuple[Any, dict[str, tuple[bool, np.ndarray]]]:
    """``build_onnx`` and, with int8, the rounded values of each quantized parameter."""
    from chargen.version import __version__

    onnx, _ = require_onnx()
    config = model.config
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be {' or '.join(QUANTIZE)}, got {quantize!r}")
    if tokenizer.vocab_size != config.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens, the model {config.vocab_size}"
        )
    size = (1 if quantize else 4) * sum(p.numel() for p in model.parameters())
    if size > MAX_PROTO_BYTES:
        kind = "int8" if quantize else "float32"
        raise ConfigError(
            f"the model's {size / 2**30:.1f} GiB of {kind} weights do not fit one ONNX file "
            "(a protobuf message holds less than 2 GiB); export is for smaller models"
        )
    g = _Graph(onnx, model, quantize)
    with torch.no_grad():
        if isinstance(model, RNNLanguageModel):
            _rnn(g, model)
        elif isinstance(model, TransformerLanguageModel):
            (_rotary if model.rotary else _learned)(g, model)
        else:
            raise ConfigError(f"no ONNX export for a {type(model).__name__}")
    h = onnx.helper
    kinds = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}

    def info(port: Port) -> Any:
        return h.make_tensor_value_info(port.name, kinds[port.dtype], list(port.shape))

    graph = h.make_graph(
        g.nodes,
        f"chargen_{config.family}_step",
        [info(p) for p in input_ports(config)],
        [info(p) for p in output_ports(config)],
        initializer=g.inits,
        doc_string=(__doc__ or "").split("\n\n")[0],
    )
    proto = h.make_model(
        graph,
        opset_imports=[h.make_opsetid("", OPSET)],
        producer_name="chargen",
        producer_version=__version__,
        doc_string="one-token step of a chargen model: ids and state in, logits and state out",
    )
    proto.ir_version = IR_VERSION
    h.set_model_props(
        proto,
        {
            "chargen.format": FORMAT,
            "chargen.version": __version__,
            "chargen.family": config.family,
            "chargen.positions": config.positions if config.family == "transformer" else "",
            "chargen.vocab_size": str(config.vocab_size),
            "chargen.vocab_sha256": vocab_digest(tokenizer),
            "chargen.weights_sha256": weights_digest(model),
            "chargen.state": ",".join(p.name for p in state_ports(config)),
            "chargen.quantize": quantize or "",
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto, g.rounded


def export_onnx(
    model: LanguageModel, tokenizer: Tokenizer, quantize: str | None = None
) -> tuple[bytes, float]:
    """The serialized graph and its logits' relative difference from ``model`` (``parity``);
    with ``quantize="int8"`` from ``model`` with the same rounded weights (``rounded_model``).

    ConfigError when that exceeds 1e-4 (float32 rounding stays far below: about 1e-7).
    """
    _, ort = require_onnx()
    model = model.float().eval()
    proto, rounded = _build(model, tokenizer, quantize)
    data = proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    diff = parity(rounded_model(model, rounded) if rounded else model, session)
    if not diff <= 1e-4:
        raise ConfigError(f"the ONNX graph's logits differ from chargen's by {diff:.3g}")
    return data, diff
