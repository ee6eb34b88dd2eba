"""Single-token steps for generation: ``step(ids (B,), state) -> (logits (B, V), state)``.

``FusedStepper`` equals ``RNNLanguageModel.forward`` on one token, only faster;
``ForwardStepper`` calls any family's cached ``forward`` on one token.

``torch.lstm`` pays a large fixed cost per call on CPU (about 0.8 ms for LSTM 512 at batch 1),
which dominates token-by-token generation. The stepper precomputes, once per generation, the
first layer's input projection for every token (the embedding folded in:
``T[v] = W_ih @ embed[v] + b_ih + b_hh``, a (V, 4H) table) and then runs each step as a table
lookup plus one ``addmm`` per layer and the gate arithmetic. Gate order follows PyTorch:
LSTM ``i, f, g, o``; GRU ``r, z, n``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from chargen.models.base import (
    LanguageModel,
    State,
    concat_states,
    expand_state,
    select_state,
)
from chargen.models.rnn import RNNLanguageModel

if TYPE_CHECKING:
    from chargen.clamp import Clamps


class Stepper(Protocol):
    def step(
        self, ids: torch.Tensor, state: State, clamps: Clamps | None = None
    ) -> tuple[torch.Tensor, State]:
        """Read one token per row, holding ``clamps``' units (``clamp.py``); return the
        next-token logits (B, V) and the new state."""
        ...


class ForwardStepper:
    """The model's own ``forward`` on one token per row (the Transformer's KV-cached step)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    @torch.inference_mode()
    def step(
        self, ids: torch.Tensor, state: State, clamps: Clamps | None = None
    ) -> tuple[torch.Tensor, State]:
        with clamps.hooked(self.model) if clamps is not None else contextlib.nullcontext():
            logits, state = self.model(ids[:, None], state)
        return logits[:, -1], state


class FusedStepper:
    """``step(ids (B,), state) -> (logits (B, V), state)`` with weights captured at creation."""

    def __init__(self, model: RNNLanguageModel) -> None:
        rnn = model.rnn
        self.lstm = model.is_lstm
        self.layers = model.config.num_layers
        with torch.no_grad():
            w_ih0 = rnn.get_parameter("weight_ih_l0").detach()
            if model.embed is not None:
                table = model.embed.weight.detach() @ w_ih0.t()
            else:
                table = w_ih0.t().clone()  # one-hot input selects a column of W_ih
            self.w_ih = [w_ih0] + [
                getattr(rnn, f"weight_ih_l{k}").detach() for k in range(1, self.layers)
            ]
            self.w_hh_t = [
                getattr(rnn, f"weight_hh_l{k}").detach().t().contiguous()
                for k in range(self.layers)
            ]
            self.w_ih_t = [w.t().contiguous() for w in self.w_ih]
            self.b_ih = [getattr(rnn, f"bias_ih_l{k}").detach() for k in range(self.layers)]
            self.b_hh = [getattr(rnn, f"bias_hh_l{k}").detach() for k in range(self.layers)]
            if self.lstm:
                self.table = table + self.b_ih[0] + self.b_hh[0]
            else:
                self.table = table + self.b_ih[0]
            head_w = model.head.weight.detach()
            if model.proj is not None:  # tied weights: fold the projection into the head
                head_w = head_w @ model.proj.weight.detach()
            self.head_w_t = head_w.t().contiguous()
            self.head_b = model.head.bias.detach()
            self.norm = model.norm

    @torch.inference_mode()
    def step(
        self, ids: torch.Tensor, state: State, clamps: Clamps | None = None
    ) -> tuple[torch.Tensor, State]:
        new_h: list[torch.Tensor] = []  # new_h[-1]: the input of layer k > 0
        new_c: list[torch.Tensor] = []
        for k in range(self.layers):
            h = state[0][k]
            if self.lstm:
                if k == 0:
                    gates = torch.addmm(self.table[ids], h, self.w_hh_t[0])
                else:
                    gates = torch.addmm(self.b_ih[k] + self.b_hh[k], new_h[-1], self.w_ih_t[k])
                    gates.addmm_(h, self.w_hh_t[k])
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * state[1][k] + torch.sigmoid(i) * torch.tanh(g)
                if clamps is not None:
                    c = clamps.apply(k, "cell", c)
                h = torch.sigmoid(o) * torch.tanh(c)
                new_c.append(c)
            else:
                gi = (
                    self.table[ids]
                    if k == 0
                    else torch.addmm(self.b_ih[k], new_h[-1], self.w_ih_t[k])
                )
                gh = torch.addmm(self.b_hh[k], h, self.w_hh_t[k])
                i_r, i_z, i_n = gi.chunk(3, dim=1)
                h_r, h_z, h_n = gh.chunk(3, dim=1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                h = (1 - z) * n + z * h
            if clamps is not None:
                h = clamps.apply(k, "hidden", h)
            new_h.append(h)
        top = new_h[-1]
        if self.norm is not None:
            top = F.layer_norm(
                top, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps
            )
        logits = torch.addmm(self.head_b, top, self.head_w_t)
        hidden = torch.stack(new_h)
        return logits, ((hidden, torch.stack(new_c)) if self.lstm else (hidden,))


class TorchRows:
    """A ``token_loop.RowStepper`` over a torch ``Stepper`` (any family, any device): the
    rows' state kept as one batched ``State``; logits come back as float32 NumPy on the CPU."""

    def __init__(self, model: LanguageModel, stepper: Stepper) -> None:
        self.model = model
        self.stepper = stepper
        self.device = model.head.weight.device
        self.state: State | None = None
        self.clamps: Clamps | None = None

    @property
    def rows(self) -> int:
        return 0 if self.state is None else int(self.state[0].shape[1])

    @torch.inference_mode()
    def step(self, last: np.ndarray) -> np.ndarray:
        assert self.state is not None, "no rows to step"
        ids = torch.from_numpy(last).to(self.device)
        logits, self.state = self.stepper.step(ids, self.state, self.clamps)
        return logits.float().cpu().numpy()

    def fresh(self) -> TorchRows:
        """A stepper over the same step with no rows."""
        return TorchRows(self.model, self.stepper)

    def keep(self, rows: np.ndarray) -> None:
        assert self.state is not None
        if len(rows) == 0:
            self.state = None
            return
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        self.state = select_state(self.state, index)

    def parts(self) -> State:
        return () if self.state is None else self.state

    def add(self, state: Sequence[torch.Tensor], copies: int = 1) -> None:
        parts = tuple(s.to(self.device) for s in state)
        if copies != 1:
            parts = expand_state(parts, copies)  # a copy
        elif self.state is None:
            parts = tuple(p.clone() for p in parts)  # rows never share the caller's memory
        self.state = parts if self.state is None else concat_states([self.state, parts])
