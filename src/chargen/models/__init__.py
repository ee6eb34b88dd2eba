"""Model families behind one interface and one registry.

Every family implements ``LanguageModel``: ``forward(ids, state) -> (logits, state)`` and
``initial_state``; ``build_stepper`` gives the fastest single-token step for generation.
"""

from __future__ import annotations

from collections.abc import Callable

from chargen.config import MODEL_FAMILIES, ModelConfig
from chargen.errors import ConfigError
from chargen.models.base import (
    LanguageModel,
    State,
    concat_states,
    detach_state,
    expand_state,
    select_state,
)
from chargen.models.rnn import RNNLanguageModel
from chargen.models.stepper import ForwardStepper, FusedStepper, Stepper
from chargen.models.transformer import TransformerLanguageModel

REGISTRY: dict[str, Callable[[ModelConfig], LanguageModel]] = {
    "lstm": RNNLanguageModel,
    "gru": RNNLanguageModel,
    "transformer": TransformerLanguageModel,
}
assert set(REGISTRY) == set(MODEL_FAMILIES)


def build_model(config: ModelConfig) -> LanguageModel:
    """Instantiate the family named by ``config.family``."""
    if config.family not in REGISTRY:
        raise ConfigError(
            f"unknown model family {config.family!r}; known: {', '.join(MODEL_FAMILIES)}"
        )
    return REGISTRY[config.family](config)


def build_stepper(model: LanguageModel) -> Stepper:
    """The single-token step for generation: fused for the RNNs, the cached forward otherwise."""
    if isinstance(model, RNNLanguageModel):
        return FusedStepper(model)
    return ForwardStepper(model)


def count_parameters(model: LanguageModel) -> int:
    """Distinct trainable numbers (a tied matrix counts once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "REGISTRY",
    "ForwardStepper",
    "FusedStepper",
    "LanguageModel",
    "RNNLanguageModel",
    "State",
    "Stepper",
    "TransformerLanguageModel",
    "build_model",
    "build_stepper",
    "concat_states",
    "count_parameters",
    "detach_state",
    "expand_state",
    "select_state",
]
