"""The units of a model, named ``LAYER:KIND:INDEX``: for an LSTM each layer's cell state
(``cell``) and hidden state (``hidden``), for a GRU each layer's hidden state, for the
Transformer each block's MLP hidden units after the GELU (``mlp``, 4 x width per block); layers
and units count from 0. ``chargen neurons`` records them, ``--clamp`` holds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chargen.errors import ConfigError
from chargen.models import LanguageModel, TransformerLanguageModel

KINDS = ("cell", "hidden", "mlp")


@dataclass(frozen=True)
class Group:
    """A contiguous block of columns of a recording: ``width`` units of one layer and kind."""

    layer: int
    kind: str
    start: int
    width: int


def unit_groups(model: LanguageModel) -> list[Group]:
    """The column blocks of a recording of ``model``, in order."""
    config = model.config
    if isinstance(model, TransformerLanguageModel):
        width = 4 * config.hidden_size
        return [Group(k, "mlp", k * width, width) for k in range(config.num_layers)]
    hidden = config.hidden_size
    if config.family == "lstm":
        return [
            Group(k, kind, (2 * k + j) * hidden, hidden)
            for k in range(config.num_layers)
            for j, kind in enumerate(("cell", "hidden"))
        ]
    return [Group(k, "hidden", k * hidden, hidden) for k in range(config.num_layers)]


def unit_column(
    groups: Sequence[Group], family: str, layer: int, kind: str, index: int, flag: str = "--units"
) -> int:
    """The column of unit ``layer:kind:index`` among ``groups``; ConfigError (naming ``flag``)
    if there is none."""
    name = f"{layer}:{kind}:{index}"
    for group in groups:
        if group.layer == layer and group.kind == kind:
            if not 0 <= index < group.width:
                raise ConfigError(
                    f"{flag} {name}: layer {layer} has {group.width} {kind} units, numbered 0 "
                    f"to {group.width - 1}"
                )
            return group.start + index
    kinds = sorted({g.kind for g in groups}, key=KINDS.index)
    if kind not in kinds:
        raise ConfigError(
            f"{flag} {name}: a {family} model has units of kind {' and '.join(kinds)}"
        )
    layers = max(g.layer for g in groups) + 1
    raise ConfigError(f"{flag} {name}: the model has {layers} layer(s), numbered 0 to {layers - 1}")
