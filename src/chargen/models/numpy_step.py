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

from typing import TYPE_CHECKING

import numpy as np
import torch

from chargen.models.base import State
from chargen.models.stepper import FusedStepper

if TYPE_CHECKING:
    from chargen.clamp import Clamps


def _np(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class NumpyRNNStep:
    """``step(ids (B,) int64) -> logits (B, V) float32``, state kept inside (``load``/``state``).

    The returned logits are a buffer reused by the next call: copy what must outlive it.
    """

    def __init__(self, fused: FusedStepper, batch_size: int, clamps: Clamps | None = None) -> None:
        self.clamps = clamps  # units held at every step (``clamp.py``)
        self.lstm = fused.lstm
        self.layers = fused.layers
        hidden = fused.w_hh_t[0].shape[0]
        self.hidden = hidden
        width = 4 * hidden if self.lstm else 3 * hidden
        if self.lstm:  # PyTorch's i, f, g, o reordered to i, f, o, g; i, f, o pre-halved
            order = np.r_[0 : 2 * hidden, 3 * hidden : 4 * hidden, 2 * hidden : 3 * hidden]
            scale = np.full(width, 0.5, dtype=np.float32)
            scale[3 * hidden :] = 1.0
        else:
            order = np.arange(width)
            scale = np.ones(width, dtype=np.float32)

        def gate_columns(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(_np(tensor)[..., order] * scale)

        self.table = gate_columns(fused.table)
        self.w_hh_t = [gate_columns(w) for w in fused.w_hh_t]
        self.w_ih_t = [None] + [gate_columns(w) for w in fused.w_ih_t[1:]]
        if self.lstm:
            self.bias = [None] + [
                gate_columns(fused.b_ih[k] + fused.b_hh[k]) for k in range(1, self.layers)
            ]
        else:
            self.bias = [None] + [_np(fused.b_ih[k]) for k in range(1, self.layers)]
            self.bias_hh = [_np(b) for b in fused.b_hh]
        self.head_w_t = _np(fused.head_w_t)
        self.head_b = _np(fused.head_b)
        norm = fused.norm
        self.norm = None
        if norm is not None:
            weight = _np(norm.weight) if norm.weight is not None else np.ones(hidden, np.float32)
            bias = _np(norm.bias) if norm.bias is not None else np.zeros(hidden, np.float32)
            self.norm = (weight, bias, float(norm.eps))
        b = batch_size
        self.batch_size = b
        self.h = np.zeros((self.layers, b, hidden), dtype=np.float32)
        self.c = np.zeros((self.layers, b, hidden), dtype=np.float32) if self.lstm else None
        self.gates = np.empty((b, width), dtype=np.float32)
        self.gates_h = np.empty((b, width), dtype=np.float32)  # GRU: the W_hh half
        self.tmp = np.empty((b, hidden), dtype=np.float32)
        self.logits = np.empty((b, self.head_w_t.shape[1]), dtype=np.float32)

    def load(self, state: State) -> None:
        """Copy a torch state (each (layers, B, hidden)) into the step's buffers."""
        self.h[...] = state[0].detach().cpu().numpy()
        if self.c is not None:
            self.c[...] = state[1].detach().cpu().numpy()

    def state(self) -> State:
        """The current state as torch tensors (copies)."""
        h = torch.from_numpy(self.h.copy())
        return (h, torch.from_numpy(self.c.copy())) if self.c is not None else (h,)

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Read one token per row, update the state in place, return the logits buffer."""
        x: np.ndarray | None = None
        layer = self._lstm_layer if self.lstm else self._gru_layer
        for k in range(self.layers):
            x = layer(k, ids, x)
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
            np.take(self.table, ids, axis=0, out=out)
        else:
            np.matmul(x, self.w_ih_t[k], out=out)
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
