"""Hold units of the model at chosen values while it reads and writes (``--clamp``).

A unit is named ``LAYER:KIND:INDEX`` as ``chargen neurons`` names it (``units.py``).
``--clamp 0:cell:17=1.5`` holds it at 1.5 at every step, the prompt's included:

- an LSTM cell: after ``c_t = f * c_{t-1} + i * g``, ``c_t[u] = v``, so ``h_t = o * tanh(c_t)``
  and the next step read the held value;
- an LSTM or GRU hidden unit: after ``h_t`` is computed, ``h_t[u] = v``, so the layer above,
  the head and the next step read it;
- a Transformer MLP unit: the block's GELU output at ``u`` is ``v`` at every position.

``Clamps`` holds, per (layer, kind), a mask and values of shape (rows, width), rows 1 (every
row alike) or one per row of a batch (the server: each request its own units); every engine
applies them with ``where(mask, values, x)``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from chargen.errors import ConfigError, SamplingError
from chargen.models import LanguageModel, RNNLanguageModel, TransformerLanguageModel
from chargen.units import unit_column, unit_groups

MAX_CLAMPS = 1024
VALUE_RANGE = 100.0  # |v|: beyond any activation a trained LSTM, GRU or GELU reaches
_SPEC = re.compile(r"^\s*(\d+):([a-z]+):(\d+)\s*=\s*(\S+)\s*$")


@dataclass(frozen=True)
class Held:
    """One unit held at one value."""

    layer: int
    kind: str
    index: int
    value: float


def parse(specs: Sequence[str]) -> list[Held]:
    """``LAYER:KIND:INDEX=VALUE`` strings -> units to hold; SamplingError (one line) otherwise.

    A unit given twice keeps its last value. Whether the unit exists is the model's question
    (``Clamps.build``).
    """
    if isinstance(specs, str) or not isinstance(specs, Sequence):
        raise SamplingError("--clamp takes a list of LAYER:KIND:UNIT=VALUE strings")
    if len(specs) > MAX_CLAMPS:
        raise SamplingError(f"--clamp holds at most {MAX_CLAMPS} units, got {len(specs)}")
    held: dict[tuple[int, str, int], Held] = {}
    for spec in specs:
        match = _SPEC.match(spec) if isinstance(spec, str) else None
        value = _number(match.group(4)) if match else None
        if match is None or value is None:
            raise SamplingError(
                f"--clamp {spec!r}: write LAYER:KIND:UNIT=VALUE, e.g. 0:cell:17=1.5 (kinds: "
                "cell, hidden, mlp; layers and units count from 0)"
            )
        if not abs(value) <= VALUE_RANGE:
            raise SamplingError(
                f"--clamp {spec!r}: the value must be in [-{VALUE_RANGE:g}, {VALUE_RANGE:g}]"
            )
        layer, kind, index = int(match.group(1)), match.group(2), int(match.group(3))
        held[(layer, kind, index)] = Held(layer, kind, index, value)
    return list(held.values())


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


Slot = tuple[torch.Tensor, torch.Tensor]  # mask (rows, width) bool, values (rows, width)


class Clamps:
    """The units held in each row of a batch: ``{(layer, kind): (mask, values)}``."""

    def __init__(self, slots: dict[tuple[int, str], Slot]) -> None:
        self.slots = slots
        self._numpy: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def build(cls, model: LanguageModel, specs: Sequence[str]) -> Clamps | None:
        """One row of held units for ``model`` (None when ``specs`` is empty); ConfigError
        naming a unit the model does not have."""
        held = parse(specs)
        if not held:
            return None
        if not isinstance(model, (RNNLanguageModel, TransformerLanguageModel)):
            raise ConfigError(
                "--clamp holds units in chargen's own engines (numpy, torch); the ONNX graph "
                "cannot hold them"
            )
        groups = unit_groups(model)
        family = model.config.family
        device = model.head.weight.device
        dtype = model.head.weight.dtype
        slots: dict[tuple[int, str], Slot] = {}
        for item in held:
            unit_column(groups, family, item.layer, item.kind, item.index, flag="--clamp")
            key = (item.layer, item.kind)
            if key not in slots:
                width = next(g.width for g in groups if (g.layer, g.kind) == key)
                slots[key] = (
                    torch.zeros((1, width), dtype=torch.bool, device=device),
                    torch.zeros((1, width), dtype=dtype, device=device),
                )
            mask, values = slots[key]
            mask[0, item.index] = True
            values[0, item.index] = item.value
        return cls(slots)

    @classmethod
    def stack(cls, rows: Sequence[Clamps | None]) -> Clamps | None:
        """One row per entry of ``rows`` (None: nothing held in that row); None if none holds."""
        if all(row is None for row in rows):
            return None
        slots: dict[tuple[int, str], Slot] = {}
        keys = {key for row in rows if row is not None for key in row.slots}
        for key in keys:
            like = next(row.slots[key] for row in rows if row is not None and key in row.slots)
            masks, values = [], []
            for row in rows:
                slot = row.slots.get(key) if row is not None else None
                masks.append(slot[0] if slot is not None else torch.zeros_like(like[0]))
                values.append(slot[1] if slot is not None else torch.zeros_like(like[1]))
            slots[key] = (torch.cat(masks), torch.cat(values))
        return cls(slots)

    def apply(self, layer: int, kind: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` (rows, width) with the held units of (layer, kind) set to their values."""
        slot = self.slots.get((layer, kind))
        if slot is None:
            return x
        mask, values = slot
        return torch.where(mask, values.to(x.dtype), x)

    def apply_numpy(self, layer: int, kind: str, x: np.ndarray) -> None:
        """Set the held units of (layer, kind) in the NumPy array ``x`` (rows, width) in place."""
        if self._numpy is None:
            self._numpy = {
                key: (mask.cpu().numpy(), values.float().cpu().numpy())
                for key, (mask, values) in self.slots.items()
            }
        slot = self._numpy.get((layer, kind))
        if slot is not None:
            np.copyto(x, slot[1], where=slot[0])

    @contextlib.contextmanager
    def hooked(self, model: LanguageModel) -> Iterator[None]:
        """While inside, a Transformer's blocks hold their MLP units (a forward hook on each
        block's GELU: (B, T, 4W) outputs take the held values at every position)."""
        if not isinstance(model, TransformerLanguageModel):
            yield
            return
        hooks = []
        for k, block in enumerate(model.typed_blocks()):
            slot = self.slots.get((k, "mlp"))
            if slot is None:
                continue
            mask, values = slot

            def hold(
                _module: torch.nn.Module,
                _inputs: tuple[torch.Tensor, ...],
                output: torch.Tensor,
                mask: torch.Tensor = mask,
                values: torch.Tensor = values,
            ) -> torch.Tensor:
                return torch.where(mask[:, None, :], values[:, None, :].to(output.dtype), output)

            hooks.append(block.act.register_forward_hook(hold))
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
