"""The RNN single-token step in NumPy, for generation on the CPU.

A torch call costs a few microseconds of dispatch on the CPU whatever its size; for the seed's
LSTM 128 at batch 1 that overhead, not arithmetic, bounds the speed. NumPy's call overhead is
several times smaller, so this step does the same maths as ``FusedStepper`` (the embedding
folded into the first layer's input table ``T[v] = W_ih @ embed[v] + b``, one matmul per
weight matrix, the LayerNorm and tied projection folded into the head) with NumPy calls into
preallocated buffers, and keeps the state in place.

Sigmoids are computed as ``sigmoid(x) = (1 + tanh(x / 2)) / 2``: the LSTM's gate columns
are reordered to ``i, f, o, g`` and those of ``i, f, o`` pre-halved (exact in floating
point), so one ``tanh`` over the whole gate row gives ``tanh(x / 2)`` for ``i, f, o`` and
``tanh(g)`` for ``g``, and one add makes ``2 sigmoid`` of the three contiguous gates.
The results equal ``RNNLanguageModel.forward`` up to float32 rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch only where a torch model or state is handed over
    import torch

    from chargen.clamp import Clamps
    from chargen.config import ModelConfig
    from chargen.models.stepper import FusedStepper


@dataclass
class RNNArrays:
    """An LSTM/GRU's generation weights as float32 arrays, PyTorch's gate order: the first
    layer's input table ``T[v] = W_ih0 embed[v] + b`` (V, G) (``b = b_ih + b_hh`` for an
    LSTM, ``b_ih`` for a GRU), then per layer ``W_ih^T`` (layers > 0), ``W_hh^T``, the biases,
    and the head (LayerNorm and tied projection folded as in ``FusedStepper``)."""

    lstm: bool
    table: np.ndarray
    w_ih_t: list[np.ndarray]  # layers 1.. (index 0 unused: the table)
    w_hh_t: list[np.ndarray]
    b_ih: list[np.ndarray]
    b_hh: list[np.ndarray]
    head_w_t: np.ndarray
    head_b: np.ndarray
    norm: tuple[np.ndarray, np.ndarray, float] | None

    @property
    def layers(self) -> int:
        return len(self.w_hh_t)


def _np(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def arrays_of_fused(fused: FusedStepper) -> RNNArrays:
    """The arrays of a torch ``FusedStepper`` (its folded table and head, bit for bit)."""
    norm = None
    if fused.norm is not None:
        hidden = fused.w_hh_t[0].shape[0]
        weight = fused.norm.weight
        bias = fused.norm.bias
        norm = (
            _np(weight) if weight is not None else np.ones(hidden, np.float32),
            _np(bias) if bias is not None else np.zeros(hidden, np.float32),
            float(fused.norm.eps),
        )
    return RNNArrays(
        lstm=fused.lstm,
        table=_np(fused.table),
        w_ih_t=[_np(w) for w in fused.w_ih_t],
        w_hh_t=[_np(w) for w in fused.w_hh_t],
        b_ih=[_np(b) for b in fused.b_ih],
        b_hh=[_np(b) for b in fused.b_hh],
        head_w_t=_np(fused.head_w_t),
        head_b=_np(fused.head_b),
        norm=norm,
    )


def saved_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensors an LSTM/GRU run saves and their shapes (a tied head is saved as the
    embedding alone)."""
    vocab, hidden, layers = config.vocab_size, config.hidden_size, config.num_layers
    gates = (4 if config.family == "lstm" else 3) * hidden
    embed = config.embed_dim
    want: dict[str, tuple[int, ...]] = {}
    if embed > 0:
        want["embed.weight"] = (vocab, embed)
    for k in range(layers):
        want[f"rnn.weight_ih_l{k}"] = (gates, (embed if embed > 0 else vocab) if k == 0 else hidden)
        want[f"rnn.weight_hh_l{k}"] = (gates, hidden)
        want[f"rnn.bias_ih_l{k}"] = (gates,)
        want[f"rnn.bias_hh_l{k}"] = (gates,)
    if config.layer_norm:
        want["norm.weight"] = want["norm.bias"] = (hidden,)
    tied = config.tie_weights and embed > 0
    if tied and embed != hidden:
        want["proj.weight"] = (embed, hidden)
    want["head.bias"] = (vocab,)
    if not tied:
        want["head.weight"] = (vocab, hidden)
    return want


def arrays_of_file(tensors: Mapping[str, np.ndarray], config: ModelConfig) -> RNNArrays | None:
    """The arrays of an LSTM/GRU's saved weights (``safetensors.numpy``), without torch; None
    unless every tensor is there with the shape ``config`` implies (float32)."""
    layers, lstm, embed = config.num_layers, config.family == "lstm", config.embed_dim
    want = saved_shapes(config)
    t = dict(tensors)
    if config.tie_weights and embed > 0:  # saved once, as the embedding
        if "head.weight" in t:
            return None
        t["head.weight"] = t.get("embed.weight", np.zeros(0, np.float32))
    if set(t) != set(want) | {"head.weight"} or any(
        t[name].shape != shape or t[name].dtype != np.float32 for name, shape in want.items()
    ):
        return None
    w_ih0 = t["rnn.weight_ih_l0"]
    table = t["embed.weight"] @ w_ih0.T if embed > 0 else np.ascontiguousarray(w_ih0.T)
    table = table + t["rnn.bias_ih_l0"]
    if lstm:
        table = table + t["rnn.bias_hh_l0"]
    head_w = t["head.weight"]
    if "proj.weight" in t:  # tied with a projection: fold it into the head
        head_w = head_w @ t["proj.weight"]
    norm = (t["norm.weight"], t["norm.bias"], 1e-5) if config.layer_norm else None
    f32 = np.float32

    def c(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=f32)

    return RNNArrays(
        lstm=lstm,
        table=c(table),
        w_ih_t=[c(t[f"rnn.weight_ih_l{k}"].T) for k in range(layers)],
        w_hh_t=[c(t[f"rnn.weight_hh_l{k}"].T) for k in range(layers)],
        b_ih=[c(t[f"rnn.bias_ih_l{k}"]) for k in range(layers)],
        b_hh=[c(t[f"rnn.bias_hh_l{k}"]) for k in range(layers)],
        head_w_t=c(head_w.T),
        head_b=c(t["head.bias"]),
        norm=norm,
    )


_PREPARED = (
    *("lstm", "layers", "hidden", "width", "table", "w_hh_t", "w_ih_t", "bias", "bias_hh"),
    *("head_w_t", "head_b", "norm"),
)
"""What ``NumpyRNNStep.__init__`` prepares from the weights (``fork`` shares it)."""


class NumpyRNNStep:
    """``step(ids (B,) int64) -> logits (B, V) float32``, state kept inside (``load``/``state``).

    The returned logits are a buffer reused by the next call: copy what must outlive it.
    """

    def __init__(self, weights: RNNArrays, batch_size: int, clamps: Clamps | None = None) -> None:
        self.clamps = clamps  # units held at every step (``clamp.py``)
        self.lstm = weights.lstm
        self.layers = weights.layers
        hidden = weights.w_hh_t[0].shape[0]
        self.hidden = hidden
        width = 4 * hidden if self.lstm else 3 * hidden
        if self.lstm:  # PyTorch's i, f, g, o reordered to i, f, o, g; i, f, o pre-halved
            order = np.r_[0 : 2 * hidden, 3 * hidden : 4 * hidden, 2 * hidden : 3 * hidden]
            scale = np.full(width, 0.5, dtype=np.float32)
            scale[3 * hidden :] = 1.0
        else:
            order = np.arange(width)
            scale = np.ones(width, dtype=np.float32)

        def gate_columns(array: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(array[..., order] * scale)

        self.table = gate_columns(weights.table)
        self.w_hh_t = [gate_columns(w) for w in weights.w_hh_t]
        self.w_ih_t = [None] + [gate_columns(w) for w in weights.w_ih_t[1:]]
        if self.lstm:
            self.bias = [None] + [
                gate_columns(weights.b_ih[k] + weights.b_hh[k]) for k in range(1, self.layers)
            ]
        else:
            self.bias = [None] + [weights.b_ih[k] for k in range(1, self.layers)]
            self.bias_hh = list(weights.b_hh)
        self.head_w_t = weights.head_w_t
        self.head_b = weights.head_b
        self.norm = weights.norm
        self.width = width
        self.h = np.zeros((self.layers, batch_size, hidden), dtype=np.float32)
        self.c = np.zeros_like(self.h) if self.lstm else None
        self._buffers(batch_size)

    def _buffers(self, b: int) -> None:
        """Work buffers for ``b`` rows."""
        self.batch_size = b
        self.gates = np.empty((b, self.width), dtype=np.float32)
        self.gates_h = np.empty((b, self.width), dtype=np.float32)  # GRU: the W_hh half
        self.tmp = np.empty((b, self.hidden), dtype=np.float32)
        self.logits = np.empty((b, self.head_w_t.shape[1]), dtype=np.float32)

    @property
    def rows(self) -> int:
        return self.batch_size

    def keep(self, rows: np.ndarray) -> None:
        """Keep these rows of the state, in this order (repeats allowed)."""
        self.h = np.ascontiguousarray(self.h[:, rows])
        if self.c is not None:
            self.c = np.ascontiguousarray(self.c[:, rows])
        self._buffers(len(rows))

    def fork(self, rows: int = 1) -> NumpyRNNStep:
        """A step over the same weights (shared, not copied) with ``rows`` fresh zero rows."""
        other = object.__new__(NumpyRNNStep)
        for name in _PREPARED:
            if hasattr(self, name):
                setattr(other, name, getattr(self, name))
        other.clamps = None
        other.h = np.zeros((self.layers, rows, self.hidden), dtype=np.float32)
        other.c = np.zeros_like(other.h) if self.lstm else None
        other._buffers(rows)
        return other

    def fresh(self) -> NumpyRNNStep:
        """A step over the same weights with no rows."""
        return self.fork(0)

    def parts(self) -> tuple[np.ndarray, ...]:
        """The rows' state: (hidden,) or, for an LSTM, (hidden, cell)."""
        return (self.h,) if self.c is None else (self.h, self.c)

    def add(self, state: Sequence[Any], copies: int = 1) -> None:
        """Append the rows of a state (hidden, and cell for an LSTM: NumPy arrays or torch
        tensors, each (layers, rows, hidden)) after the others, each row ``copies`` times."""
        parts = [_array(part) for part in state]
        if copies != 1:
            parts = [np.repeat(part, copies, axis=1) for part in parts]
        self.h = np.concatenate([self.h, parts[0]], axis=1)
        if self.c is not None:
            self.c = np.concatenate([self.c, parts[1]], axis=1)
        self._buffers(self.h.shape[1])

    @classmethod
    def from_fused(
        cls, fused: FusedStepper, batch_size: int, clamps: Clamps | None = None
    ) -> NumpyRNNStep:
        """The step of a torch ``FusedStepper``'s weights."""
        return cls(arrays_of_fused(fused), batch_size, clamps)

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Read one token per row, update the state in place, return the logits buffer."""
        x: np.ndarray | None = None
        layer = self._lstm_layer if self.lstm else self._gru_layer
        for k in range(self.layers):
            x = layer(k, ids, x)
        assert x is not None  # at least one layer
        top = x
        if self.norm is not None:
            weight, bias, eps = self.norm
            centred = top - top.mean(axis=1, keepdims=True)
            top = centred / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + eps)
            top = top * weight + bias
        np.matmul(top, self.head_w_t, out=self.logits)
        self.logits += self.head_b
        return self.logits

    def _input_gates(self, k: int, ids: np.ndarray, x: np.ndarray | None, out: np.ndarray) -> None:
        """``out = W_ih x + b`` for layer k (a table row for layer 0)."""
        if k == 0:
            np.take(self.table, ids, axis=0, out=out, mode="clip")  # ids are ours; no buffer
        else:
            w_ih_t = self.w_ih_t[k]
            assert x is not None and w_ih_t is not None  # layers above the first have both
            np.matmul(x, w_ih_t, out=out)
            out += self.bias[k]

    def _lstm_layer(self, k: int, ids: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        H, gates, tmp = self.hidden, self.gates, self.tmp
        h, c = self.h[k], self.c[k]  # type: ignore[index]
        self._input_gates(k, ids, x, gates)
        np.matmul(h, self.w_hh_t[k], out=self.gates_h)
        gates += self.gates_h
        np.tanh(gates, out=gates)  # i, f, o: tanh(x / 2); g: tanh(g)
        gates[:, : 3 * H] += 1.0  # i, f, o: 2 sigmoid(x)
        c *= gates[:, H : 2 * H]  # 2 c' = 2f c + 2i g
        np.multiply(gates[:, :H], gates[:, 3 * H :], out=tmp)
        c += tmp
        c *= 0.5
        if self.clamps is not None:
            self.clamps.apply_numpy(k, "cell", c)
        np.tanh(c, out=h)  # h = o tanh(c')
        h *= gates[:, 2 * H : 3 * H]
        h *= 0.5
        if self.clamps is not None:
            self.clamps.apply_numpy(k, "hidden", h)
        return h

    def _gru_layer(self, k: int, ids: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        H, gi, gh = self.hidden, self.gates, self.gates_h
        h = self.h[k]
        self._input_gates(k, ids, x, gi)
        np.matmul(h, self.w_hh_t[k], out=gh)
        gh += self.bias_hh[k]
        rz = gi[:, : 2 * H]
        rz += gh[:, : 2 * H]
        np.negative(rz, out=rz)  # sigmoid(a) = 1 / (1 + exp(-a))
        np.exp(rz, out=rz)
        rz += 1.0
        np.reciprocal(rz, out=rz)
        r, z = gi[:, :H], gi[:, H : 2 * H]
        n = gi[:, 2 * H :]
        np.multiply(r, gh[:, 2 * H :], out=self.tmp)
        n += self.tmp
        np.tanh(n, out=n)
        h -= n  # h' = (1 - z) * n + z * h = n + z * (h - n)
        h *= z
        h += n
        if self.clamps is not None:
            self.clamps.apply_numpy(k, "hidden", h)
        return h


def _array(part: Any) -> np.ndarray:
    """A state part as a float32 NumPy array (a torch tensor is copied to the CPU)."""
    if not isinstance(part, np.ndarray):
        part = part.detach().cpu().numpy()
    return part.astype(np.float32, copy=False)


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """While inside, NumPy's BLAS (OpenBLAS) runs on one thread.

    Its idle threads spin-wait between calls and fight torch's thread pool (the draw's cumsum
    and log-softmax) for the cores: on a 2-core Xeon, 256 rows of LSTM 128 drew 30,000 chars/s
    with both pools at 2 threads and 245,000 with BLAS on one (``benchmarks/RESULTS.md``,
    "Generation speed"). One row's draw is NumPy alone, and there BLAS threads help the step.
    """
    from threadpoolctl import threadpool_limits  # its own import costs nothing on the plain path

    return threadpool_limits(1, user_api="blas")
