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
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from chargen.errors import ConfigError
from chargen.models import LanguageModel, RNNLanguageModel, State, TransformerLanguageModel
from chargen.models.transformer import Block
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


# --------------------------------------------------------------------------- interface
@dataclass(frozen=True)
class Port:
    """One graph input or output: name, shape (``"batch"`` for the dynamic batch), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # float32 | int64


def state_ports(config: Any) -> list[Port]:
    """The state inputs of a run's step graph, in order (``config``: its ModelConfig)."""
    layers, width = config.num_layers, config.hidden_size
    if config.family in ("lstm", "gru"):
        names = ("h", "c") if config.family == "lstm" else ("h",)
        return [Port(n, (layers, "batch", width), "float32") for n in names]
    heads, ctx = config.num_heads, config.context_size
    pos = Port("pos", (1, "batch"), "int64")
    if config.positions == "rotary":
        cache = (layers, "batch", heads, ctx, width // heads)
        return [Port("k", cache, "float32"), Port("v", cache, "float32"), pos]
    return [pos, Port("tokens", (1, "batch", ctx), "int64")]


def input_ports(config: Any) -> list[Port]:
    return [Port("ids", ("batch",), "int64"), *state_ports(config)]


def output_ports(config: Any) -> list[Port]:
    logits = Port("logits", ("batch", config.vocab_size), "float32")
    return [logits, *(Port(p.name + "_out", p.shape, p.dtype) for p in state_ports(config))]


def onnx_state(model: LanguageModel, state: State) -> State:
    """chargen's state of ``model`` as the graph's state inputs (learned positions: pos, tokens)."""
    if isinstance(model, TransformerLanguageModel) and not model.rotary:
        return (state[2], state[3])
    return state


def vocab_digest(tokenizer: Tokenizer) -> str:
    """sha256 of the vocabulary (its tokens in id order, as JSON)."""
    return hashlib.sha256(json.dumps(tokenizer.vocab, ensure_ascii=True).encode()).hexdigest()


def weights_digest(model: LanguageModel) -> str:
    """sha256 over the model's parameters (names and float32 bytes, in order)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- graph builder
class _Graph:
    """Nodes and initializers with fresh names; ``param`` stores a tensor once (tied weights)."""

    def __init__(self, onnx: Any, model: LanguageModel, quantize: str | None = None) -> None:
        self.onnx = onnx
        self.quantize = quantize
        # int8: parameter name -> (transposed?, the float32 values the graph computes with)
        self.rounded: dict[str, tuple[bool, np.ndarray]] = {}
        self.int8: dict[int, tuple[str, str]] = {}  # tensor key -> (int8 rows, scales)
        self.helper = onnx.helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0
        self.stored: dict[int, str] = {}
        self.names = {id(p): name for name, p in model.named_parameters()}
        self.consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def _fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def array(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def param(self, tensor: torch.Tensor, transpose: bool = False) -> str:
        """A model parameter as float32, stored once per tensor: an initializer, or with int8
        a matrix's ``DequantizeLinear`` of its int8 rows and their scales."""
        key = id(tensor) * 2 + int(transpose)
        if key not in self.stored and self._quantized(tensor):
            rows, scales = self._int8(tensor, transpose)
            self.stored[key] = self.op("DequantizeLinear", rows, scales, axis=0)
        if key not in self.stored:
            name = self.names.get(id(tensor)) or self._fresh("weight")
            value = tensor.detach().to(torch.float32).cpu().numpy()
            if transpose:
                name, value = name + ".T", value.T
            self.stored[key] = self.array(name, value)
        return self.stored[key]

    def rows(self, tensor: torch.Tensor, ids: str, transpose: bool = False) -> str:
        """``Gather(param, ids, axis=0)``; with int8 the int8 rows and their scales are gathered
        and multiplied (the whole matrix is not dequantized for a few rows)."""
        if not self._quantized(tensor):
            return self.op("Gather", self.param(tensor, transpose), ids, axis=0)
        rows, scales = self._int8(tensor, transpose)
        picked = self.op(
            "Cast", self.op("Gather", rows, ids, axis=0), to=self.onnx.TensorProto.FLOAT
        )
        scale = self.unsqueeze(self.op("Gather", scales, ids, axis=0), [-1])
        return self.op("Mul", picked, scale)

    def _quantized(self, tensor: torch.Tensor) -> bool:
        return self.quantize == "int8" and tensor.dim() == 2

    def _int8(self, tensor: torch.Tensor, transpose: bool) -> tuple[str, str]:
        """(int8 rows, float32 scale per row) initializers of a matrix, stored once."""
        key = id(tensor) * 2 + int(transpose)
        if key not in self.int8:
            name = self.names.get(id(tensor)) or self._fresh("weight")
            value = tensor.detach().to(torch.float32).cpu().numpy()
            if transpose:
                name, value = name + ".T", value.T
            q, scale = quantize_rows(value)
            base = name.removesuffix(".T")
            if base in self.rounded and self.rounded[base][0] != transpose:
                raise ConfigError(f"{base} is used both as it is and transposed; no int8 export")
            self.rounded[base] = (transpose, q.astype(np.float32) * scale[:, None])
            self.int8[key] = (self.array(name + ".int8", q), self.array(name + ".scale", scale))
        return self.int8[key]

    def const(self, value: Any, dtype: str = "int64") -> str:
        array = np.asarray(value, dtype=dtype)
        key = (dtype, array.tobytes(), array.shape)
        if key not in self.consts:
            self.consts[key] = self.array(self._fresh("const"), array)
        return self.consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        name = out or self._fresh(op_type.lower())
        self.nodes.append(
            self.helper.make_node(op_type, list(inputs), [name], name=self._fresh(op_type), **attrs)
        )
        return name

    def ops(self, op_type: str, inputs: list[str], count: int, **attrs: Any) -> list[str]:
        names = [self._fresh(op_type.lower()) for _ in range(count)]
        self.nodes.append(
            self.helper.make_node(op_type, inputs, names, name=self._fresh(op_type), **attrs)
        )
        return names

    # ----------------------------------------------------------------- layers
    def linear(self, x: str, layer: torch.nn.Linear | None, weight: Any = None) -> str:
        """``x W^T + b`` for a 2-D ``x``: one Gemm on the weight as PyTorch stores it."""
        w = layer.weight if layer is not None else weight
        inputs = [x, self.param(w)]
        if layer is not None and layer.bias is not None:
            inputs.append(self.param(layer.bias))
        return self.op("Gemm", *inputs, transB=1)

    def layer_norm(self, x: str, norm: torch.nn.LayerNorm) -> str:
        """LayerNorm over the last axis from ReduceMean, Sub, Mul, Sqrt and Div."""
        mean = self.op("ReduceMean", x, axes=[-1], keepdims=1)
        centred = self.op("Sub", x, mean)
        var = self.op("ReduceMean", self.op("Mul", centred, centred), axes=[-1], keepdims=1)
        eps = self.const(norm.eps, "float32")
        y = self.op("Div", centred, self.op("Sqrt", self.op("Add", var, eps)))
        if norm.weight is not None:
            y = self.op("Mul", y, self.param(norm.weight))
        if norm.bias is not None:
            y = self.op("Add", y, self.param(norm.bias))
        return y

    def gelu(self, x: str) -> str:
        """The exact GELU: ``0.5 x (1 + erf(x / sqrt 2))``."""
        erf = self.op("Erf", self.op("Mul", x, self.const(1 / math.sqrt(2), "float32")))
        half = self.op("Mul", x, self.const(0.5, "float32"))
        return self.op("Mul", half, self.op("Add", erf, self.const(1.0, "float32")))

    def unsqueeze(self, x: str, axes: list[int], out: str | None = None) -> str:
        return self.op("Unsqueeze", x, self.const(axes), out=out)

    def squeeze(self, x: str, axes: list[int]) -> str:
        return self.op("Squeeze", x, self.const(axes))

    def reshape(self, x: str, shape: list[int]) -> str:
        return self.op("Reshape", x, self.const(shape))

    def stack(self, parts: list[str], out: str) -> str:
        """(L of (...)) -> (L, ...): the per-layer states as one output."""
        return self.op("Concat", *[self.unsqueeze(p, [0]) for p in parts], axis=0, out=out)

    def layer(self, state: str, k: int) -> str:
        return self.op("Gather", state, self.const(k), axis=0)


# --------------------------------------------------------------------------- families
def _rnn(g: _Graph, model: RNNLanguageModel) -> None:
    rnn, hidden, lstm = model.rnn, model.config.hidden_size, model.is_lstm
    gates = 4 if lstm else 3
    split = g.const([hidden] * gates)
    embed = model.embed
    x = g.rows(embed.weight, "ids") if embed is not None else ""
    new_h, new_c = [], []
    for k in range(model.config.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
        if k == 0 and embed is None:  # one-hot input: x W^T is a row of W^T
            row = g.rows(w_ih, "ids", transpose=True)
            gi = g.op("Add", row, g.param(b_ih))
        else:
            gi = g.op("Gemm", x, g.param(w_ih), g.param(b_ih), transB=1)
        h = g.layer("h", k)
        gh = g.op("Gemm", h, g.param(w_hh), g.param(b_hh), transB=1)
        if lstm:  # PyTorch's gate order i, f, g, o
            i, f, cand, o = g.ops("Split", [g.op("Add", gi, gh), split], 4, axis=1)
            c = g.op(
                "Add",
                g.op("Mul", g.op("Sigmoid", f), g.layer("c", k)),
                g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", cand)),
            )
            h = g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c))
            new_c.append(c)
        else:  # r, z, n; h' = (1 - z) n + z h
            i_r, i_z, i_n = g.ops("Split", [gi, split], 3, axis=1)
            h_r, h_z, h_n = g.ops("Split", [gh, split], 3, axis=1)
            r = g.op("Sigmoid", g.op("Add", i_r, h_r))
            z = g.op("Sigmoid", g.op("Add", i_z, h_z))
            n = g.op("Tanh", g.op("Add", i_n, g.op("Mul", r, h_n)))
            keep = g.op("Sub", g.const(1.0, "float32"), z)
            h = g.op("Add", g.op("Mul", keep, n), g.op("Mul", z, h))
        new_h.append(h)
        x = h
    top = g.layer_norm(x, model.norm) if model.norm is not None else x
    if model.proj is not None:
        top = g.linear(top, model.proj)
    g.op("Gemm", top, g.param(model.head.weight), g.param(model.head.bias), transB=1, out="logits")
    g.stack(new_h, "h_out")
    if lstm:
        g.stack(new_c, "c_out")


def _finish(g: _Graph, model: TransformerLanguageModel, x: str) -> None:
    """Final LayerNorm, [projection,] head -> ``logits`` (x: (B, W))."""
    x = g.layer_norm(x, model.norm)
    if model.proj is not None:
        x = g.linear(x, model.proj)
    g.op("Gemm", x, g.param(model.head.weight), g.param(model.head.bias), transB=1, out="logits")


def _mlp(g: _Graph, block: Block, x: str) -> str:
    """``x + fc_out(gelu(fc(ln2(x))))`` for x (rows, W)."""
    hidden = g.gelu(g.linear(g.layer_norm(x, block.ln2), block.fc))
    return g.op("Add", x, g.linear(hidden, block.fc_out))


def _rotary(g: _Graph, model: TransformerLanguageModel) -> None:
    """One cached step: the new key/value overwrite slot ``pos mod C``; attend to slots <= pos."""
    ctx, heads, dim = model.context, model.heads, model.head_dim
    width = heads * dim
    pos = g.reshape("pos", [-1])  # (B,)
    slots = g.const(np.arange(ctx))
    write = g.op("Equal", g.unsqueeze(g.op("Mod", pos, g.const(ctx)), [1]), slots)  # (B, C)
    write = g.unsqueeze(write, [1, 3])  # (B, 1, C, 1)
    valid = g.unsqueeze(g.op("LessOrEqual", slots, g.unsqueeze(pos, [1])), [1, 2])  # (B,1,1,C)
    as_float = g.op("Cast", pos, to=g.onnx.TensorProto.FLOAT)
    angles = g.op("Mul", g.unsqueeze(as_float, [1]), g.array("inv_freq", _np(model.inv_freq)))
    cos = g.unsqueeze(g.op("Cos", angles), [1, 2])  # (B, 1, 1, D/2)
    sin = g.unsqueeze(g.op("Sin", angles), [1, 2])
    halves = g.const([dim // 2, dim // 2])

    def rotate(t: str) -> str:  # (B, N, 1, D), halves convention as transformer.rotate
        t1, t2 = g.ops("Split", [t, halves], 2, axis=-1)
        first = g.op("Sub", g.op("Mul", t1, cos), g.op("Mul", t2, sin))
        second = g.op("Add", g.op("Mul", t2, cos), g.op("Mul", t1, sin))
        return g.op("Concat", first, second, axis=-1)

    x = g.rows(model.embed.weight, "ids")  # (B, E)
    if model.embed_proj is not None:
        x = g.linear(x, model.embed_proj)
    scale = g.const(1 / math.sqrt(dim), "float32")
    floor = g.const(np.finfo(np.float32).min, "float32")
    keys, values = [], []
    for layer, block in enumerate(model.typed_blocks()):
        qkv = g.reshape(g.linear(g.layer_norm(x, block.ln1), block.qkv), [0, 3, heads, dim])
        q, k, v = (
            g.op("Transpose", t, perm=[0, 2, 1, 3])  # (B, 1, N, D) -> (B, N, 1, D)
            for t in g.ops("Split", [qkv, g.const([1, 1, 1])], 3, axis=1)
        )
        q = rotate(q)
        all_k = g.op("Where", write, rotate(k), g.layer("k", layer))  # (B, N, C, D)
        all_v = g.op("Where", write, v, g.layer("v", layer))
        keys.append(all_k)
        values.append(all_v)
        scores = g.op("MatMul", q, g.op("Transpose", all_k, perm=[0, 1, 3, 2]))  # (B, N, 1, C)
        scores = g.op("Where", valid, g.op("Mul", scores, scale), floor)
        attended = g.op("MatMul", g.op("Softmax", scores, axis=-1), all_v)  # (B, N, 1, D)
        x = g.op("Add", x, g.linear(g.reshape(attended, [0, width]), block.out))
        x = _mlp(g, block, x)
    _finish(g, model, x)
    g.stack(keys, "k_out")
    g.stack(values, "v_out")
    g.op("Add", "pos", g.const(1), out="pos_out")


def _learned(g: _Graph, model: TransformerLanguageModel) -> None:
    """Store the id in the token ring, re-read the last C ids (positions 0..), logits of the last."""
    ctx, heads, dim = model.context, model.heads, model.head_dim
    width = heads * dim
    pos = g.reshape("pos", [-1])  # (B,)
    slots = g.const(np.arange(ctx))
    write = g.op("Equal", g.unsqueeze(g.op("Mod", pos, g.const(ctx)), [1]), slots)  # (B, C)
    ring = g.op("Where", write, g.unsqueeze("ids", [1]), g.squeeze("tokens", [0]))  # (B, C)
    g.unsqueeze(ring, [0], out="tokens_out")
    g.op("Add", "pos", g.const(1), out="pos_out")
    shift = g.op("Max", g.op("Sub", pos, g.const(ctx - 1)), g.const(0))  # oldest position kept
    order = g.op("Mod", g.op("Add", g.unsqueeze(shift, [1]), slots), g.const(ctx))
    window = g.op("GatherElements", ring, order, axis=1)  # (B, C), oldest first
    last = g.unsqueeze(g.op("Min", pos, g.const(ctx - 1)), [1])  # (B, 1): the newest's index

    x = g.rows(model.embed.weight, window)  # (B, C, E)
    if model.embed_proj is not None:
        flat = g.reshape(x, [-1, model.config.embed_dim])
        x = g.reshape(g.linear(flat, model.embed_proj), [-1, ctx, width])
    assert model.pos_embed is not None
    x = g.reshape(g.op("Add", x, g.param(model.pos_embed.weight)), [-1, width])  # (B C, W)
    causal = g.op("LessOrEqual", slots, g.unsqueeze(slots, [1]))  # (C, C): key <= query
    scale = g.const(1 / math.sqrt(dim), "float32")
    floor = g.const(np.finfo(np.float32).min, "float32")
    for block in model.typed_blocks():
        qkv = g.reshape(g.linear(g.layer_norm(x, block.ln1), block.qkv), [-1, ctx, 3, heads, dim])
        qkv = g.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])  # (3, B, N, C, D)
        q, k, v = (g.squeeze(t, [0]) for t in g.ops("Split", [qkv, g.const([1, 1, 1])], 3))
        scores = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), scale)
        scores = g.op("Where", causal, scores, floor)  # (B, N, C, C)
        attended = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)  # (B, N, C, D)
        attended = g.reshape(g.op("Transpose", attended, perm=[0, 2, 1, 3]), [-1, width])
        x = _mlp(g, block, g.op("Add", x, g.linear(attended, block.out)))
    newest = g.op("GatherND", g.reshape(x, [-1, ctx, width]), last, batch_dims=1)  # (B, W)
    _finish(g, model, newest)


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float32).cpu().numpy()


def quantize_rows(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row of a matrix: (q int8 (R, C), scale float32 (R,)), ``value ~
    scale * q`` with ``scale = max |row| / 127`` (1 for a row of zeros)."""
    top = np.abs(value).max(axis=1)
    scale = np.where(top > 0, top / 127, 1).astype(np.float32)
    q = np.clip(np.rint(value / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def rounded_model(model: LanguageModel, rounded: dict[str, tuple[bool, np.ndarray]]) -> Any:
    """A copy of ``model`` whose matrices hold the values an int8 graph computes with."""
    twin = copy.deepcopy(model)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for name, (transposed, value) in rounded.items():
            params[name].copy_(torch.from_numpy(value.T if transposed else value))
    return twin


# --------------------------------------------------------------------------- export
def build_onnx(model: LanguageModel, tokenizer: Tokenizer, quantize: str | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``model``'s one-token step (checked by ``onnx.checker``);
    ``quantize="int8"``: int8 weight matrices (module notes)."""
    return _build(model, tokenizer, quantize)[0]


def _build(
    model: LanguageModel, tokenizer: Tokenizer, quantize: str | None
) -> tuple[Any, dict[str, tuple[bool, np.ndarray]]]:
    """``build_onnx`` and, with int8, the rounded values of each quantized parameter."""
    from chargen import __version__

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


def random_states(model: LanguageModel, rows: int, seed: int = 0) -> State:
    """A chargen state of ``rows`` rows far from the initial one, for parity checks.

    RNNs: random ``h`` in (-1, 1) and ``c`` ~ N(0, 2); rotary Transformer: N(0, 1) caches and
    positions in [0, 3C); learned positions: the state after reading random ids of random
    lengths in [0, 3C) (its caches must agree with its tokens).
    """
    gen = torch.Generator().manual_seed(seed)
    state = model.initial_state(rows)
    if isinstance(model, RNNLanguageModel):
        h = torch.rand(state[0].shape, generator=gen) * 2 - 1
        return (h, torch.randn(state[1].shape, generator=gen) * 2) if model.is_lstm else (h,)
    assert isinstance(model, TransformerLanguageModel)
    ctx, vocab = model.context, model.config.vocab_size
    lengths = torch.randint(0, 3 * ctx, (rows,), generator=gen)
    if model.rotary:
        k, v = (torch.randn(state[0].shape, generator=gen) for _ in range(2))
        return (k, v, lengths[None].clone())
    from chargen.models import concat_states

    parts = []
    with torch.inference_mode():
        for n in lengths.tolist():
            one = model.initial_state(1)
            if n:
                _, one = model(torch.randint(0, vocab, (1, n), generator=gen), one)
            parts.append(tuple(s.clone() for s in one))
    return concat_states(parts)


def parity(model: LanguageModel, session: Any, rows: int = 8, seed: int = 0) -> float:
    """Largest |logit difference| between the graph run by ``session`` and ``model.forward``
    on one step from ``random_states``, relative to ``1 + max |logit|``.

    ConfigError when an output has the wrong shape or type, an int64 state output differs, or
    a float state output differs by more than ``1e-4 (1 + max |value|)``.
    """
    state = random_states(model, rows, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, model.config.vocab_size, (rows,), generator=gen)
    feeds = {"ids": ids.numpy()}
    for port, tensor in zip(state_ports(model.config), onnx_state(model, state), strict=True):
        feeds[port.name] = tensor.numpy().copy()
    outputs = session.run(None, feeds)
    with torch.inference_mode():
        logits, new_state = model(ids[:, None], tuple(s.clone() for s in state))
    expected = (logits[:, -1], *onnx_state(model, new_state))
    worst = 0.0
    for port, got, want in zip(output_ports(model.config), outputs, expected, strict=True):
        want = want.numpy()
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ConfigError(f"the graph's {port.name} is {got.dtype}{list(got.shape)}")
        if port.dtype == "int64":
            if not np.array_equal(got, want):
                raise ConfigError(f"the graph's {port.name} differs from chargen's")
            continue
        diff = float(np.abs(got - want).max() / (1.0 + np.abs(want).max())) if got.size else 0.0
        if port.name == "logits":
            worst = diff
        elif not diff <= 1e-4:
            raise ConfigError(f"the graph's {port.name} differs from chargen's by {diff:.2g}")
    return worst


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
