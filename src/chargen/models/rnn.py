"""Recurrent language models (LSTM, GRU) on PyTorch's fused ``nn.LSTM`` / ``nn.GRU`` kernels.

Shapes: ids (B, T) int64 -> logits (B, T, V); state is ``(h, c)`` for an LSTM and ``(h,)`` for
a GRU, each (layers, B, hidden). The same ``forward`` serves training (T = seq_len) and
generation (T = 1, state carried), so a new token costs one step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chargen.config import ModelConfig
from chargen.models.base import LanguageModel, State, tie_or_project


class RNNLanguageModel(LanguageModel):
    """Embedding (or one-hot) -> dropout -> LSTM/GRU stack -> [LayerNorm] -> dropout ->
    [projection to the embedding width when tied] -> linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        vocab, hidden = config.vocab_size, config.hidden_size
        self.embed: nn.Embedding | None = None
        if config.embed_dim > 0:
            self.embed = nn.Embedding(vocab, config.embed_dim)
            input_size = config.embed_dim
        else:
            input_size = vocab
        rnn_cls = nn.LSTM if config.family == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            input_size,
            hidden,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.norm = nn.LayerNorm(hidden) if config.layer_norm else None
        self.drop = nn.Dropout(config.dropout)
        self.proj, self.head = tie_or_project(self.embed, hidden, vocab, config.tie_weights)

    @property
    def is_lstm(self) -> bool:
        return self.config.family == "lstm"

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, input_size) inputs of the first recurrent layer."""
        if self.embed is None:
            return F.one_hot(ids, self.config.vocab_size).to(self.head.weight.dtype)
        return self.embed(ids)

    def output(self, top: torch.Tensor) -> torch.Tensor:
        """Top-layer outputs (..., hidden) -> logits (..., V)."""
        if self.norm is not None:
            top = self.norm(top)
        top = self.drop(top)
        if self.proj is not None:
            top = self.proj(top)
        return self.head(top)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Return next-token logits for every position and the state after the last one."""
        x = self.drop(self.embed_ids(ids))
        if self.is_lstm:
            out, (h, c) = self.rnn(x, None if state is None else (state[0], state[1]))
            new_state: State = (h, c)
        else:
            out, h = self.rnn(x, None if state is None else state[0])
            new_state = (h,)
        return self.output(out), new_state

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """All-zero state for ``batch_size`` rows."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        dtype = self.head.weight.dtype
        n = 2 if self.is_lstm else 1
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(n))
