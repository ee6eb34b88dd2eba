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

State = tuple[torch.Tensor, ...]


class RNNLanguageModel(nn.Module):
    """Embedding (or one-hot) -> dropout -> LSTM/GRU stack -> dropout -> linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set before building a model")
        self.config = config
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
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(hidden, vocab)

    @property
    def is_lstm(self) -> bool:
        return self.config.family == "lstm"

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, input_size) inputs of the first recurrent layer."""
        if self.embed is None:
            return F.one_hot(ids, self.config.vocab_size).to(self.head.weight.dtype)
        return self.embed(ids)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Return next-token logits for every position and the state after the last one."""
        x = self.drop(self.embed_ids(ids))
        if self.is_lstm:
            out, (h, c) = self.rnn(x, None if state is None else (state[0], state[1]))
            new_state: State = (h, c)
        else:
            out, h = self.rnn(x, None if state is None else state[0])
            new_state = (h,)
        return self.head(self.drop(out)), new_state

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """All-zero state for ``batch_size`` rows."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        dtype = self.head.weight.dtype
        n = 2 if self.is_lstm else 1
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(n))


def select_state(state: State, index: torch.Tensor) -> State:
    """Gather rows ``index`` (B',) of every state tensor (batch is dim 1)."""
    return tuple(s.index_select(1, index) for s in state)


def expand_state(state: State, rows: int) -> State:
    """Repeat a one-row state ``rows`` times."""
    return tuple(s.expand(-1, rows, -1).contiguous() for s in state)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd history (truncated BPTT) while keeping the values."""
    return None if state is None else tuple(s.detach() for s in state)
