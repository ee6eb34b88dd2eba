"""The checks behind the configuration dataclasses of ``config.py``: one line of error each.

``_from_dict`` builds a dataclass from JSON, checking every value's type against the field's
annotation (``_typed``: a bool is not an integer, an integral float such as ``64.0`` is taken
as ``64``, anything else of the wrong type is refused); ``_check_int``, ``_check_float`` and
``_check_str`` are the type and range checks each ``validate`` is made of. Every failure is a
``ConfigError`` naming the field or flag, the offending value shortened by ``_short``.
"""

from __future__ import annotations

import math
import reprlib
import types
import typing
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from chargen.errors import ConfigError

if TYPE_CHECKING:
    from chargen.config import ModelConfig, TrainConfig

T = TypeVar("T")

MAX_COUNT = (1 << 62) - 1  # any other count (steps, eval_every, ...): fits int64 with room

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
_short.maxlevel = 2


def _from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys or a value of the wrong type are a
    ConfigError naming ``what`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(_short.repr(k) for k in unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _typed(v, hints[k], f"{what}: {k}") for k, v in data.items()}
    return cls(**kwargs)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against type hint ``hint`` (str, int, float, bool, X | None,
    tuple[X, ...]); an integral float becomes an int; ConfigError naming ``where`` otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_short.repr(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_typed(v, item, where) for v in value)
    if hint is int and _is_int(value):
        return value
    if hint is int and isinstance(value, float) and _finite(value) and value.is_integer():
        return int(value)
    if hint is float and (_is_int(value) or isinstance(value, float)):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    raise ConfigError(f"{where} must be {names.get(hint, hint)}, got {_short.repr(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(value: Any, flag: str, *, low: int, high: int = MAX_COUNT) -> None:
    """ConfigError unless ``value`` is an int (not a bool) in ``[low, high]``."""
    if not _is_int(value) or not low <= value <= high:
        bound = f">= {low}" if high == MAX_COUNT else f"in [{low}, {high:,}]"
        raise ConfigError(f"{flag} must be an integer {bound}, got {_short.repr(value)}")


def _finite(value: float) -> bool:
    """``math.isfinite`` that is False, not OverflowError, for an int beyond float range."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_str(value: Any, flag: str) -> None:
    """ConfigError unless ``value`` is a string."""
    if not isinstance(value, str):
        raise ConfigError(f"{flag} must be a string, got {_short.repr(value)}")


def _check_float(
    value: Any,
    flag: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        rng = (
            f"in {lo}, {hi}"
            if low is not None and high is not None
            else (f"> {low:g}" if low_open else f">= {low:g}")
        )
        raise ConfigError(f"{flag} must be {rng}, got {_short.repr(value)}")


def estimate_parameters(config: ModelConfig) -> int:
    """The parameter count of the model ``config`` describes (a tied matrix counted once),
    computed from the sizes alone, so an impossible model is refused before it is built."""
    vocab, width, embed, layers = (
        config.vocab_size,
        config.hidden_size,
        config.embed_dim,
        config.num_layers,
    )
    total = vocab * embed + vocab  # embedding (absent when embed_dim is 0) and head bias
    if config.tie_weights:
        total += width * embed if embed != width else 0  # map to the embedding width
    else:
        total += width * vocab  # head weight
    if config.family == "transformer":
        total += embed * width if embed != width else 0
        total += config.context_size * width if config.positions == "learned" else 0
        return total + layers * (12 * width * width + 13 * width) + 2 * width
    gates = 4 if config.family == "lstm" else 3
    fan_in = embed if embed > 0 else vocab
    for _ in range(layers):
        total += gates * width * (fan_in + width) + 2 * gates * width
        fan_in = width
    return total + (2 * width if config.layer_norm else 0)


def check_compatible(model: ModelConfig, train: TrainConfig) -> None:
    """ConfigError when the model cannot be trained as ``train`` says (a Transformer's
    training windows must fit its context)."""
    if model.family != "transformer":
        return
    length, flag = (
        (train.seq_len, "--seq-len") if train.batching == "streams" else (train.maxlen, "--maxlen")
    )
    if length > model.context_size:
        raise ConfigError(
            f"{flag} ({length}) must be <= --context-size ({model.context_size}) for a transformer"
        )
