"""The request of ``POST /v1/completions`` (``CompletionRequest``: OpenAI's fields, each may
be null) and its mapping onto ``/v1/generate``'s: ``plan_request`` checks what only this route
has (``n``, ``max_tokens``, ``suffix``, ``best_of``, OpenAI's ``logit_bias``) and makes one
``GenerateRequest`` per choice, validated as that route validates it (``openai_api.py`` says
where the fields differ from OpenAI's).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chargen.errors import ChargenError
from chargen.server.requests import MAX_SEED, GenerateRequest, ServerLimits

DEFAULT_MAX_TOKENS = 16  # OpenAI's (and vLLM's) default for the completions API
MAX_LOGPROBS = 20  # alternatives per token (OpenAI allows 5, vLLM 20 by default)
SEED_SPACE = 2**64  # seeds are taken modulo this (rng.py)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = None


class CompletionRequest(BaseModel):
    """OpenAI's fields (each may be null: its default then). Any other field must be one of
    ``GenerateRequest``'s sampling fields; it is checked when the request is mapped onto it."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str | list[str] | None = ""  # null: the empty prompt
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = Field(None, ge=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=MAX_SEED)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | list[str] | None = None
    suffix: str | None = None
    best_of: int | None = None
    user: str | None = None

    @field_validator("prompt", "stop", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("must be a string or a list of strings (token ids are not supported)")


@dataclass(frozen=True)
class Plan:
    """A completion request mapped onto ``/v1/generate``'s: one request per choice."""

    requests: list[GenerateRequest]  # choice i * n + j: prompt i, seed + j
    n: int
    logprobs: int | None
    echo: bool
    stream: bool
    include_usage: bool


def plan_request(body: CompletionRequest, limits: ServerLimits, pieces: Sequence[str]) -> Plan:
    """Check what only this route has, then map every field onto ``GenerateRequest``."""
    prompt = "" if body.prompt is None else body.prompt
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    n = 1 if body.n is None else body.n
    max_tokens = DEFAULT_MAX_TOKENS if body.max_tokens is None else body.max_tokens
    extra = dict(body.model_extra or {})
    if not prompts:
        raise ChargenError("prompt: the list holds no prompt")
    if len(prompts) * n > limits.max_choices:
        raise ChargenError(
            f"n times the number of prompts must be at most {limits.max_choices} on this "
            f"server, got {len(prompts) * n}"
        )
    if max_tokens > limits.max_length:
        raise ChargenError(
            f"max_tokens must be at most {limits.max_length} on this server, got {max_tokens}"
        )
    if body.suffix:
        raise ChargenError("suffix is not supported: chargen continues a prompt, it fills no gap")
    if body.best_of is not None and body.best_of != n:
        raise ChargenError("best_of is not supported (chargen returns every sample it draws)")
    if "length" in extra:
        raise ChargenError("length is /v1/generate's name: this route's is max_tokens")
    mapped = {
        "length": max_tokens,
        "stop": [body.stop] if isinstance(body.stop, str) else body.stop,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "frequency_penalty": body.frequency_penalty,
        "presence_penalty": body.presence_penalty,
        "logit_bias": _logit_bias(body.logit_bias, pieces),
    }
    shared = {**extra, **{k: v for k, v in mapped.items() if v is not None}}
    seed = secrets.randbits(64) if body.seed is None else body.seed % SEED_SPACE
    requests = [
        _generate_request({**shared, "prompt": prompt, "seed": (seed + j) % SEED_SPACE})
        for prompt in prompts
        for j in range(n)
    ]
    return Plan(
        requests,
        n,
        body.logprobs,
        bool(body.echo),
        bool(body.stream),
        bool(body.stream and body.stream_options and body.stream_options.include_usage),
    )


def _logit_bias(value: dict[str, float] | list[str] | None, pieces: Sequence[str]) -> Any:
    """OpenAI's ``{"token id": bias}`` as chargen's ``["TOKEN=BIAS"]``; a list is chargen's."""
    if not isinstance(value, dict):
        return value
    entries = []
    for key, bias in value.items():
        try:
            token = int(key)
        except ValueError:
            token = -1
        if not 0 <= token < len(pieces):
            raise ChargenError(
                f"logit_bias: {ascii(key[:20])} is not a token id of this model "
                f"(0 to {len(pieces) - 1})"
            )
        entries.append(f"{pieces[token]}={bias!r}")
    return entries


def _generate_request(data: dict[str, Any]) -> GenerateRequest:
    """``/v1/generate``'s request, validated as that route validates it."""
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
