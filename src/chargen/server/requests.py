"""The request bodies of the HTTP API, each sampling field described once (``fields.py``).

``/v1/generate``, ``/v1/distribution`` and ``/v1/beams`` take their own fields and every field
of ``SamplingConfig``, with the command line's names, defaults and help; pydantic checks types
and the ranges of the route's own fields, ``SamplingConfig.validate`` the sampling fields (one
line naming the field). No text may hold a lone UTF-16 surrogate.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from chargen.beam import MAX_BEAMS
from chargen.errors import ChargenError
from chargen.fields import help_of
from chargen.sampling import SamplingConfig

MAX_SEED = 2**64 - 1  # seeds are taken mod 2**64 (rng.py); larger ones only alias

SERVED_BEAMS = 16
"""Beams one /v1/beams request may ask (the command line allows ``beam.MAX_BEAMS``)."""


def no_lone_surrogates(value: str) -> str:
    """A JSON ``\\ud800`` escape decodes to a lone surrogate, which no text can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "holds a lone UTF-16 surrogate (\\ud800-\\udfff), not a character"
        ) from None
    return value


class _Texts(BaseModel):
    """Every text field of a request, its own or a sampling field, is checked for surrogates."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("prompt", check_fields=False)
    @classmethod
    def _text(cls, value: str) -> str:
        return no_lone_surrogates(value)

    @field_validator(
        "stop", "ban_strings", "logit_bias", "dry_sequence_breakers", check_fields=False
    )
    @classmethod
    def _texts(cls, value: Any) -> Any:
        return type(value)(no_lone_surrogates(v) for v in value)

    @field_validator("regex", "ban_chars", check_fields=False)
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return value if value is None else no_lone_surrogates(value)


class _RequestFields(_Texts):
    """What /v1/generate takes besides the sampling fields (added below)."""

    prompt: str = Field("", description="text to continue")
    length: int = Field(400, ge=0, description="tokens to generate (the CLI's --length)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the same seed and settings, the same text")
    stop: list[str] = Field(default_factory=list, description="end the text at any of these")
    stream: bool = Field(False, description="server-sent events: one per token, then done")


class _DistributionFields(_Texts):
    """What /v1/distribution takes besides the sampling fields (added below)."""

    prompt: str = ""
    top: int = Field(400, ge=1, le=5000)  # the model's likeliest tokens at T = 1
    xray_top: int = Field(10, ge=1, le=1000)  # the likeliest tokens of each X-ray stage


class _BeamFields(_Texts):
    """What /v1/beams takes besides the sampling fields (added below)."""

    prompt: str = Field("", description="text to continue")
    length: int = Field(60, ge=0, description="tokens in each beam (the CLI's --length)")
    beams: int = Field(4, ge=1, le=min(SERVED_BEAMS, MAX_BEAMS), description="beams to keep")
    length_penalty: float = Field(
        1.0, allow_inf_nan=False, description="score = sum log p / length ** this"
    )


class ScoreRequest(_Texts):
    text: str

    @field_validator("text")
    @classmethod
    def _scored(cls, value: str) -> str:
        return no_lone_surrogates(value)


def _sampling_fields() -> dict[str, Any]:
    """SamplingConfig's fields as pydantic fields: the same names, defaults and help (their
    ranges are checked by ``SamplingConfig.validate``, one line naming the field)."""
    hints = typing.get_type_hints(SamplingConfig)
    return {
        f.name: (hints[f.name], Field(f.default, description=help_of(f)))
        for f in dataclasses.fields(SamplingConfig)
    }


if TYPE_CHECKING:

    class _SamplingFields(BaseModel):
        """What a type checker sees of the sampling fields, which create_model adds below."""

        def __getattr__(self, name: str) -> Any: ...

    class GenerateRequest(_RequestFields, _SamplingFields):
        pass

    class DistributionRequest(_DistributionFields, _SamplingFields):
        pass

    class BeamRequest(_BeamFields, _SamplingFields):
        pass

else:
    GenerateRequest = create_model("GenerateRequest", __base__=_RequestFields, **_sampling_fields())
    DistributionRequest = create_model(
        "DistributionRequest", __base__=_DistributionFields, **_sampling_fields()
    )
    BeamRequest = create_model("BeamRequest", __base__=_BeamFields, **_sampling_fields())


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for, and how many may be in flight."""

    max_queue: int = 64  # requests in flight (generating or queued); 429 past it
    max_length: int = 2000  # tokens one request may generate
    timeout_s: float = 60.0  # seconds from a request's first byte to its last token
    max_body_bytes: int = 64 * 1024  # counted as the body arrives, chunked or not; 413 past it
    body_timeout_s: float = 10.0  # the whole body must arrive within this (408)
    max_prompt_chars: int = 16_384  # read over several ticks, a slice per tick
    max_stops: int = 16  # stop strings per request
    max_stop_chars: int = 256  # characters per stop string
    max_score_chars: int = 200_000  # /v1/score text (the body limit binds first by default)
    stuck_after_s: float = 5.0  # /healthz is 503 when the generation loop was idle this long
    max_choices: int = 16  # /v1/completions: choices per request (prompts times n)


def check_length_and_prompt(req: GenerateRequest | BeamRequest, limits: ServerLimits) -> None:
    """ChargenError (a 400) for a length or a prompt past this server's limits."""
    if req.length > limits.max_length:
        raise ChargenError(
            f"length must be at most {limits.max_length} on this server, got {req.length}"
        )
    if len(req.prompt) > limits.max_prompt_chars:
        raise ChargenError(
            f"prompt must be at most {limits.max_prompt_chars} characters on this server, "
            f"got {len(req.prompt)}"
        )


def sampling_of(req: GenerateRequest | DistributionRequest | BeamRequest) -> SamplingConfig:
    """The request's sampling fields as a validated ``SamplingConfig``."""
    fields = SamplingConfig.__dataclass_fields__
    return SamplingConfig(**{k: getattr(req, k) for k in fields}).validate()
