"""Model families behind one interface: ``forward(ids, state) -> (logits, state)``."""

from __future__ import annotations

from torch import nn

from chargen.config import MODEL_FAMILIES, ModelConfig
from chargen.errors import ConfigError
from chargen.models.rnn import RNNLanguageModel, State, detach_state, expand_state, select_state

REGISTRY: dict[str, type[nn.Module]] = {"lstm": RNNLanguageModel, "gru": RNNLanguageModel}


def build_model(config: ModelConfig) -> RNNLanguageModel:
    """Instantiate the family named by ``config.family``."""
    if config.family not in REGISTRY:
        raise ConfigError(
            f"unknown model family {config.family!r}; known: {', '.join(MODEL_FAMILIES)}"
        )
    return REGISTRY[config.family](config)  # type: ignore[return-value]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "REGISTRY",
    "RNNLanguageModel",
    "State",
    "build_model",
    "count_parameters",
    "detach_state",
    "expand_state",
    "select_state",
]
