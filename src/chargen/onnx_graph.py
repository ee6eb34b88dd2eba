"""The step graph written node by node with ``onnx.helper`` (see ``export_onnx.py``).

``_Graph`` holds the nodes and initializers (each parameter stored once; with int8 a matrix is
stored as int8 rows and scales and dequantized in the graph, ``onnx_int8.quantize_rows``) and
writes the layers from plain operators; ``_rnn``, ``_rotary`` and ``_learned`` write one
family's one-token step into it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from chargen.errors import ConfigError
from chargen.models import LanguageModel, RNNLanguageModel, TransformerLanguageModel
from chargen.models.transformer import Block
from chargen.onnx_int8 import quantize_rows


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
