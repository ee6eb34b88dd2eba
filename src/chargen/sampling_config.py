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
from chargen.fields import option

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

    # each field: its default, then its help (the CLI flag --x-y's and the API's), ranges included
    temperature: float = option(1.0, "one or more; 0 is greedy")
    top_k: int | None = option(None, "keep the k most likely tokens, k in [1, 1,000,000]")
    top_p: float | None = option(
        None, "nucleus: keep the fewest tokens whose p reaches this, in (0, 1]"
    )
    min_p: float | None = option(None, "keep tokens with p >= min_p * max p, in [0, 1]")
    typical_p: float | None = option(None, "locally typical sampling mass, in (0, 1]")
    repetition_penalty: float = option(
        1.0, "CTRL: logits of recent tokens / r (or * r if negative); r in [0.01, 100], 1 = off"
    )
    frequency_penalty: float = option(
        0.0, "logit -= this * count of the token in the window; in [-100, 100]"
    )
    presence_penalty: float = option(
        0.0, "logit -= this if the token is in the window; in [-100, 100]"
    )
    penalty_window: int = option(64, "recent tokens the penalties look at, in [1, 65,536]")
    no_repeat_ngram_size: int = option(
        0, "never repeat an n-gram of this size, in [0, 64] (0: off)"
    )
    # --- the samplers of samplers.py (DRY, XTC, top-n-sigma, mirostat, dynamic temperature)
    dry_multiplier: float = option(
        0.0, "DRY: a repeat pays X * base ** (length - allowed), X in [0, 100] (0: off)"
    )
    dry_base: float = option(1.75, "DRY: growth of the penalty per token of repeat, in [1, 100]")
    dry_allowed_length: int = option(2, "DRY: tokens a repeat may run unpenalised, in [1, 65,536]")
    dry_penalty_last_n: int = option(
        -1, "DRY: recent tokens searched for repeats (-1: the whole history; 0: off)"
    )
    dry_sequence_breakers: tuple[str, ...] = option(
        ("\n", ":", '"', "*"),
        "DRY: strings a repeat may not cross (at most 64 of 40 chars; escapes read; '' for none)",
    )
    xtc_probability: float = option(
        0.0,
        "XTC: chance per token of cutting every choice above the threshold but the least likely",
    )
    xtc_threshold: float = option(0.1, "XTC: p a top choice must reach, in [0, 1] (above 0.5: off)")
    top_n_sigma: float | None = option(
        None, "keep tokens whose logit is within N (in (0, 100]) standard deviations of the best"
    )
    mirostat_tau: float | None = option(
        None, "mirostat v2: target surprisal in bits per token (per char: compare val bits/char)"
    )
    mirostat_eta: float = option(0.1, "mirostat v2: learning rate, in (0, 1]")
    dynatemp_range: float = option(
        0.0, "dynamic temperature: T from T-X (certain steps) to T+X (uncertain ones) (0: off)"
    )
    dynatemp_exponent: float = option(
        1.0, "dynamic temperature: normalised entropy ** this sets T within the range"
    )
    # --- the constraints of constraints.py (regex, banned characters and strings, logit bias)
    regex: str | None = option(
        None,
        "the continuation must match this regex in full (re.fullmatch); generation ends when it "
        "can go no further (no escapes decoded: quote it, e.g. 'T[^\\n]*\\n')",
    )
    ban_chars: str = option("", "never write these characters (a lipogram: eE; escapes read)")
    ban_strings: tuple[str, ...] = option(
        (), "never write these strings, even across token boundaries (escapes read)"
    )
    logit_bias: tuple[str, ...] = option(
        (), "TOKEN=BIAS: add BIAS, in [-100, 100], to that token's logit (escapes read)"
    )
    # --- the model's own units, held in the model step (clamp.py), not a rule on the logits
    clamp: tuple[str, ...] = option(
        (),
        "LAYER:KIND:UNIT=VALUE: hold that unit (as `chargen neurons` names it) at VALUE, in "
        "[-100, 100], at every step (repeatable)",
    )

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
        from chargen import clamp  # imports torch

        clamp.parse(self.clamp)
        self.clamp = tuple(self.clamp)  # a JSON list reads back as the tuple it was
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
