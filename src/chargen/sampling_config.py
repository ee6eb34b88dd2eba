"""The knobs of the sampling chain, without torch: the command line builds its flags from them.

``SamplingConfig`` is re-exported by ``sampling.py``, where the rules it switches on live
(their order and maths are documented there); ``chain.SamplingChain`` builds them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from chargen.errors import SamplingError

GREEDY_BELOW = 1e-12  # a temperature below this is greedy (l / T would overflow)

MAX_TOP_K = 1_000_000  # no vocabulary is larger (checkpoint limits)
MAX_WINDOW = 65_536  # tokens the penalties look back over
MAX_NGRAM = 64  # longest n-gram --no-repeat-ngram-size bans
REPETITION_PENALTY_RANGE = (0.01, 100.0)  # a multiplier: beyond it logits leave float32's range
ADDITIVE_PENALTY_RANGE = (-100.0, 100.0)  # per occurrence, in logits (nats)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_temperature(temperature: Any) -> None:
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise SamplingError(f"--temperature must be a finite number >= 0, got {temperature!r}")


@dataclass
class SamplingConfig:
    """Every knob of the sampling chain; field ``x_y`` is the CLI flag ``--x-y``.

    ``temperature`` 0 is greedy. ``None`` (or 1.0 for top-p / typical-p, 0 for min-p) switches a
    truncation off; 1.0 switches the repetition penalty off and 0 the other penalties and the
    n-gram ban.
    """

    temperature: float = 1.0  # >= 0; 0 = greedy
    top_k: int | None = None  # in [1, MAX_TOP_K]
    top_p: float | None = None  # in (0, 1]
    min_p: float | None = None  # in [0, 1]
    typical_p: float | None = None  # in (0, 1]
    repetition_penalty: float = 1.0  # in [0.01, 100] (CTRL: positive logits / r, negative * r)
    frequency_penalty: float = 0.0  # in [-100, 100]: logit -= f * count(token in window)
    presence_penalty: float = 0.0  # in [-100, 100]: logit -= p * [token in window]
    penalty_window: int = 64  # in [1, MAX_WINDOW]: how many recent tokens the penalties look at
    no_repeat_ngram_size: int = 0  # in [0, MAX_NGRAM]; 0 = off
    # --- the samplers of samplers.py (DRY, XTC, top-n-sigma, mirostat, dynamic temperature)
    dry_multiplier: float = 0.0  # in [0, 100]; 0 = off: repeats pay multiplier * base ** excess
    dry_base: float = 1.75  # in [1, 100]: DRY's growth per token of repeat past the allowed length
    dry_allowed_length: int = 2  # in [1, 65536]: tokens a repeat may run before DRY penalises it
    dry_penalty_last_n: int = -1  # -1 (the whole history) or in [0, 2**31 - 1]; 0 = off
    dry_sequence_breakers: tuple[str, ...] = ("\n", ":", '"', "*")  # <= 64, each <= 40 chars
    xtc_probability: float = 0.0  # in [0, 1]; 0 = off: chance per step that XTC cuts
    xtc_threshold: float = 0.1  # in [0, 1]; > 0.5 = off: p a top choice must reach
    top_n_sigma: float | None = None  # in (0, 100]: keep l >= max l - n * std(l)
    mirostat_tau: float | None = None  # in (0, 100] bits per token (= per char for char models)
    mirostat_eta: float = 0.1  # in (0, 1]: mirostat's learning rate
    dynatemp_range: float = 0.0  # in [0, 100]; 0 = off: T_dyn in [max(0, T - r), T + r]
    dynatemp_exponent: float = 1.0  # in (0, 100]: T_dyn follows normalised entropy ** this
    # --- the constraints of constraints.py (regex, banned characters and strings, logit bias)
    regex: str | None = None  # the continuation must match it in full (re.fullmatch)
    ban_chars: str = ""  # no token holding one of these characters (a lipogram: "eE")
    ban_strings: tuple[str, ...] = ()  # never in the text, even across token boundaries
    logit_bias: tuple[str, ...] = ()  # "TOKEN=BIAS": BIAS in [-100, 100] added to TOKEN's logit

    def validate(self) -> SamplingConfig:
        """Raise SamplingError (one line naming the CLI flag) on a value out of range; return self.

        The bounds keep every processed logit finite: a penalised logit is at most
        ``100 * |l|`` or ``|l| + 100 * MAX_WINDOW`` away from the model's own.
        """
        _check_temperature(self.temperature)
        if self.top_k is not None and (not _is_int(self.top_k) or not 1 <= self.top_k <= MAX_TOP_K):
            raise SamplingError(
                f"--top-k must be an integer in [1, {MAX_TOP_K}], got {self.top_k!r}"
            )
        _check_unit("--top-p", self.top_p, low_open=True)
        _check_unit("--min-p", self.min_p, low_open=False)
        _check_unit("--typical-p", self.typical_p, low_open=True)
        _check_range("--repetition-penalty", self.repetition_penalty, *REPETITION_PENALTY_RANGE)
        _check_range("--frequency-penalty", self.frequency_penalty, *ADDITIVE_PENALTY_RANGE)
        _check_range("--presence-penalty", self.presence_penalty, *ADDITIVE_PENALTY_RANGE)
        if not _is_int(self.penalty_window) or not 1 <= self.penalty_window <= MAX_WINDOW:
            raise SamplingError(
                f"--penalty-window must be an integer in [1, {MAX_WINDOW}], "
                f"got {self.penalty_window!r}"
            )
        n = self.no_repeat_ngram_size
        if not _is_int(n) or not 0 <= n <= MAX_NGRAM:
            raise SamplingError(
                f"--no-repeat-ngram-size must be an integer in [0, {MAX_NGRAM}], got {n!r}"
            )
        from chargen import constraints  # imports this module

        constraints.check(self)
        from chargen import samplers  # imports this module

        samplers.check(self)
        return self

    @property
    def greedy(self) -> bool:
        """``True`` when the temperature means greedy decoding (``T < GREEDY_BELOW``)."""
        return self.temperature < GREEDY_BELOW

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        """Inverse of ``to_dict`` (missing keys take their defaults); validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SamplingError(f"unknown sampling option(s): {', '.join(unknown)}")
        return cls(**data).validate()


def _check_range(flag: str, value: Any, low: float, high: float) -> None:
    if not _is_real(value) or not math.isfinite(value) or not low <= value <= high:
        raise SamplingError(f"{flag} must be a number in [{low:g}, {high:g}], got {value!r}")


def _check_unit(flag: str, value: Any, *, low_open: bool) -> None:
    if value is None:
        return
    ok = _is_real(value) and (value > 0 if low_open else value >= 0) and value <= 1
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise SamplingError(f"{flag} must be in {interval}, got {value!r}")
