"""The interface every model family implements, and helpers on its state.

A family is an ``nn.Module`` with ``forward(ids (B, T), state) -> (logits (B, T, V), state)``.
``state`` is a tuple of tensors whose dim 1 is the batch (so rows can be selected, repeated
and concatenated without knowing the family); ``None`` means "nothing read yet". Reading a
text in pieces while carrying the state gives the same logits as reading it in one call.
"""

from __future__ import annotations

import torch
from torch import nn

from chargen.config import ModelConfig

State = tuple[torch.Tensor, ...]


class LanguageModel(nn.Module):
    """Base class of the families: embedding -> layers -> ``head`` (a Linear over the vocabulary)."""

    config: ModelConfig
    head: nn.Linear
    #: whether training carries the state from one batch to the next (truncated BPTT)
    carries_state: bool = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set before building a model")
        self.config = config

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """The state of ``batch_size`` rows that have read nothing."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.head.weight.device


def select_state(state: State, index: torch.Tensor) -> State:
    """Gather rows ``index`` (B',) of every state tensor (batch is dim 1)."""
    return tuple(s.index_select(1, index) for s in state)


def expand_state(state: State, rows: int) -> State:
    """Repeat a one-row state ``rows`` times (a copy: rows never share memory)."""
    return tuple(s.expand(s.shape[0], rows, *s.shape[2:]).contiguous() for s in state)


def concat_states(states: list[State]) -> State:
    """Stack the rows of several states (all of one model) into one batch."""
    return tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))


def detach_state(state: State | None) -> State | None:
    """Cut the autograd history (truncated BPTT) while keeping the values."""
    return None if state is None else tuple(s.detach() for s in state)


def tie_or_project(
    embed: nn.Embedding | None, width: int, vocab: int, tie: bool
) -> tuple[nn.Linear | None, nn.Linear]:
    """The output side: an optional ``width -> embed_dim`` map and the head over the vocabulary.

    With ``tie`` the head's weight is the embedding matrix (Press & Wolf 2017), so the top
    layer is mapped to the embedding width first when the two differ.
    """
    if not tie:
        return None, nn.Linear(width, vocab)
    assert embed is not None
    dim = embed.embedding_dim
    proj = nn.Linear(width, dim, bias=False) if dim != width else None
    head = nn.Linear(dim, vocab)
    head.weight = embed.weight
    return proj, head
