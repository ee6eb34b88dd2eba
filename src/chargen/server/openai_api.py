"""OpenAI-compatible routes: ``POST /v1/completions`` and ``GET /v1/models``.

An adapter, as llama.cpp's server and vLLM offer, so that clients written for OpenAI's legacy
completions API (the ``openai`` package, LangChain, lm-evaluation-harness, ...) work unchanged.
It maps each request onto ``/v1/generate``'s request (``GenerateRequest``: the same validation,
caps, sampling chain, batcher, deadline and seeds) and each choice onto one batcher job; it
writes no generation of its own. Errors are OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, one line, and 400 where ``/v1/generate`` answers 422.

What differs from OpenAI, said plainly:

* ``model``: any value is accepted (as llama.cpp does); responses and ``/v1/models`` name the
  served run (its folder's name).
* ``prompt``: a string or a list of strings (token-id prompts are refused). Characters the
  vocabulary lacks are dropped, as ``/v1/generate`` does, and a top-level ``warnings`` list
  (a chargen extension, in responses that are not streamed) says so; a prompt with no known
  character is refused.
* ``max_tokens``: 16 when absent (OpenAI's and vLLM's default), at most the server's
  ``--max-length``. A token is a character for a character-level run.
* ``temperature`` 0 is greedy (the most likely token; the seed then changes nothing). Any
  finite value >= 0 is accepted (OpenAI caps it at 2).
* ``frequency_penalty`` and ``presence_penalty`` are chargen's: they count a token's
  occurrences among the last ``penalty_window`` tokens (64 unless given) of prompt and text,
  not over the whole completion as OpenAI does, and take values in [-100, 100].
* ``seed``: the same seed gives the same text, and choice ``j`` of ``n`` uses ``seed + j``, so
  choice 0 equals ``/v1/generate`` with that seed. Without a seed each request draws a random
  one (``/v1/generate``'s default is 0). Negative seeds are taken modulo 2**64.
* ``n`` and a list of prompts: choice ``i * n + j`` is prompt ``i``'s ``j``-th sample; at
  most ``max_choices`` choices per request, and all must fit in the queue at once (429).
* ``stop``: the text ends before the first stop string; a stream holds back the tail that
  could still become one, so no part of a stop string is ever sent.
* ``logprobs`` (an integer, at most 20): natural-log probabilities of each token under the
  distribution it was drawn from, as OpenAI documents it: the model's distribution after
  every sampling rule of the request (temperature, truncations, penalties, constraints). With
  ``temperature`` 1 and no rule that is the model's own distribution (``/v1/distribution``);
  with a truncation, tokens it removed have probability 0 and are left out of
  ``top_logprobs`` (which may then list fewer than asked); greedy draws from a one-hot, so
  every token's log-probability is 0. (vLLM reports the model's distribution before the
  rules by default.) ``text_offset`` counts characters of the returned ``text``.
* ``echo`` puts the prompt before the text. With ``logprobs`` the prompt's tokens come first,
  each scored by the model itself (no sampling rule drew them) given the prompt before it;
  the first has none (null), as OpenAI's.
* ``finish_reason``: ``stop`` for a stop string or a complete ``regex`` match, ``length`` for
  ``max_tokens`` and also for the server's time limit (``/v1/generate`` says ``timeout``).
* ``logit_bias``: OpenAI's ``{"token id": bias}`` (bias in [-100, 100], added to the logit)
  or chargen's list of ``"TOKEN=BIAS"`` strings.
* ``suffix`` and a ``best_of`` other than ``n`` are refused; ``user`` is ignored;
  ``stream_options.include_usage`` is honoured.
* Other fields: chargen's sampling fields under ``/v1/generate``'s names (``top_k``,
  ``min_p``, ``typical_p``, ``repetition_penalty``, ``dry_*``, ``xtc_*``, ``mirostat_*``,
  ``regex``, ``ban_chars``, ...); anything else is refused, as OpenAI refuses an unknown
  argument (``length`` too: this route's name for it is ``max_tokens``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chargen.chain import SamplingChain
from chargen.errors import ChargenError
from chargen.generate import StopWatcher
from chargen.sampling import SamplingConfig
from chargen.score import CHUNK
from chargen.server.app import ServerLimits, _watch
from chargen.server.batcher import Batcher, Job, failure_line
from chargen.server.body import send_json
from chargen.server.requests import MAX_SEED, GenerateRequest

log = logging.getLogger("chargen.server")

DEFAULT_MAX_TOKENS = 16  # OpenAI's (and vLLM's) default for the completions API
MAX_LOGPROBS = 20  # alternatives per token (OpenAI allows 5, vLLM 20 by default)
SEED_SPACE = 2**64  # seeds are taken modulo this (rng.py)
OPENAI_PATHS = ("/v1/completions", "/v1/models")

MakeJob = Callable[..., Awaitable[tuple[Job, list[str]]]]
"""``make_job(req, request, chain)`` of ``app.create_app``: validate, build, submit."""


# ------------------------------------------------------------------------------ the request
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
class _Plan:
    """A completion request mapped onto ``/v1/generate``'s: one request per choice."""

    requests: list[GenerateRequest]  # choice i * n + j: prompt i, seed + j
    n: int
    logprobs: int | None
    echo: bool
    stream: bool
    include_usage: bool


def _plan(body: CompletionRequest, limits: ServerLimits, pieces: Sequence[str]) -> _Plan:
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
    return _Plan(
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


# ------------------------------------------------------------------- top tokens of each draw
class _TopTokens(SamplingChain):
    """A request's sampling chain that keeps the ``top`` most likely tokens of every
    distribution it hands the batcher, for ``logprobs``.

    Its key is its own, so the batcher gives its request a pass of the chain of its own (as it
    does for any chain that reads its history): every ``logprobs`` call is then this request's
    row alone, one call per token drawn, and ``tops[i]`` belongs to the token of index ``i``.
    The list grows on the batcher's thread (``logprobs_arrays``, which every draw calls)
    before that token's event is sent.
    """

    def __init__(
        self, cfg: SamplingConfig, vocab: Sequence[str] | None = None, *, top: int
    ) -> None:
        super().__init__(cfg, vocab)
        self.key = ("own", id(self))
        self.top = top
        self.pieces = list(vocab or [])
        self.tops: list[tuple[list[int], list[float]]] = []

    def logprobs_arrays(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        out = super().logprobs_arrays(logits, history)
        values, ids = torch.topk(torch.from_numpy(out[0]), min(self.top, out.shape[-1]))
        self.tops.append((ids.tolist(), values.tolist()))
        return out

    def top_of(self, index: int) -> dict[str, float]:
        ids, values = self.tops[index]
        return _top_dict(self.pieces, ids, values)


def _top_dict(pieces: Sequence[str], ids: list[int], values: list[float]) -> dict[str, float]:
    """{token text: log p}, most likely first; tokens of probability 0 are left out."""
    out: dict[str, float] = {}
    for token, value in zip(ids, values, strict=True):
        if math.isfinite(value):
            out.setdefault(pieces[token], value)
    return out


# --------------------------------------------------------------------------- the choices
@dataclass(frozen=True)
class _Token:
    text: str
    logprob: float | None
    top: dict[str, float] | None
    offset: int  # characters before it: in the completion, or in the prompt for echoed ones


@dataclass(eq=False)
class _Choice:
    """One choice in flight: its job, the tokens drawn, and how many were handed out."""

    index: int
    job: Job
    prompt: str
    prompt_tokens: int  # 0 for an empty prompt (the start token is not the client's)
    logprobs: int | None
    stops: StopWatcher
    echoed: list[_Token] = field(default_factory=list)  # the prompt's tokens (echo + logprobs)
    drawn: str = ""  # every token's text, before any stop cut
    tokens: list[_Token] = field(default_factory=list)
    sent: int = 0  # tokens handed out
    sent_chars: int = 0  # characters of ``drawn`` handed out
    cut: int | None = None  # where a completed stop string starts in ``drawn``
    made: int = 0  # tokens generated (the done event's count)

    def draw(self, event: dict[str, Any]) -> None:
        """Take a token event of the batcher."""
        before = len(self.drawn)
        self.drawn += event["token"]
        self.tokens.append(_Token(event["token"], event["logprob"], self._top(event), before))
        if self.stops.stops and self.cut is None:
            hit = self.stops.find(self.drawn, before)
            self.cut = hit[0] if hit else None

    def _top(self, event: dict[str, Any]) -> dict[str, float] | None:
        if self.logprobs is None:
            return None
        chain = self.job.chain
        return chain.top_of(event["index"]) if isinstance(chain, _TopTokens) else {}

    def safe_end(self) -> int:
        """Characters of ``drawn`` that no stop string can take back."""
        if self.cut is not None:
            return self.cut
        return self.stops.safe_end(self.drawn) if self.stops.stops else len(self.drawn)

    def release(self, limit: int, final: bool) -> tuple[str, list[_Token]]:
        """The text and tokens not yet handed out that end by character ``limit``; ``final``:
        also the token ``limit`` cuts, clipped (a stop string cut into it)."""
        out: list[_Token] = []
        end = self.sent_chars
        while self.sent < len(self.tokens):
            token = self.tokens[self.sent]
            token_end = token.offset + len(token.text)
            if token_end > limit:
                if final and token.offset < limit:
                    out.append(replace(token, text=token.text[: limit - token.offset]))
                    self.sent += 1
                break
            out.append(token)
            end = token_end
            self.sent += 1
        if final:
            end = limit
        text = self.drawn[self.sent_chars : end]
        self.sent_chars = max(self.sent_chars, end)
        return text, out


def _finish_reason(stop_reason: str) -> str:
    """The batcher's reason in OpenAI's words: a stop string or a complete regex match is a
    natural end (``stop``); the token limit and the time limit are ``length``."""
    return "stop" if stop_reason in ("stop", "regex") else "length"


def _logprobs_block(tokens: list[_Token], base: int = 0) -> dict[str, list[Any]]:
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [_finite(t.logprob) for t in tokens],
        "top_logprobs": [t.top for t in tokens],
        "text_offset": [base + t.offset for t in tokens],
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@torch.inference_mode()
def _score_prompt(batcher: Batcher, ids: list[int], top: int) -> list[_Token]:
    """The prompt's tokens, each with log p under the model given the tokens before it (as
    generation reads a prompt: from the initial state, no start token); the first has none."""
    model, pieces = batcher.model, batcher.pieces
    device = model.head.weight.device
    tokens = [_Token(pieces[ids[0]], None, None, 0)]
    offset = len(tokens[0].text)
    state = model.initial_state(1, device)
    for begin in range(0, len(ids) - 1, CHUNK):
        x = torch.tensor([ids[begin : begin + CHUNK]], dtype=torch.long, device=device)
        targets = ids[begin + 1 : begin + CHUNK + 1]
        with batcher.weights_lock:  # not while new weights are copied in (live.py)
            logits, state = model(x[:, : len(targets)], state)
        logp = torch.log_softmax(logits[0].float(), dim=-1).cpu()
        chosen = logp.gather(1, torch.tensor(targets)[:, None])[:, 0].tolist()
        values, top_ids = torch.topk(logp, min(top, logp.shape[-1]))
        for row, (token, lp) in enumerate(zip(targets, chosen, strict=True)):
            alternatives = _top_dict(pieces, top_ids[row].tolist(), values[row].tolist())
            tokens.append(_Token(pieces[token], lp, alternatives, offset))
            offset += len(pieces[token])
    return tokens


# ----------------------------------------------------------------------------- in flight
class _Failed(Exception):
    """A job of the request ended with an error event."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class _Flight:
    """The jobs of one request: their events merged into one queue, a deadline backstop for
    each (``app._watch``), with ``request`` a watch for the client hanging up; ``close`` ends
    every job and task."""

    def __init__(self, jobs: list[Job], request: Request | None) -> None:
        self.jobs = jobs
        self.queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.tasks = [asyncio.ensure_future(self._forward(i, job)) for i, job in enumerate(jobs)]
        self.tasks += [asyncio.ensure_future(_watch(job, None)) for job in jobs]
        if request is not None:
            self.tasks.append(asyncio.ensure_future(self._hang_up(request)))

    async def _forward(self, index: int, job: Job) -> None:
        while True:
            event = await job.events.get()
            self.queue.put_nowait((index, event))
            if event["event"] in ("done", "error"):
                return

    async def _hang_up(self, request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self.queue.put_nowait((-1, {"event": "error", "detail": "client disconnected"}))

    async def events(self) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """(job index, event) until every job is done; raises _Failed at the first error."""
        running = len(self.jobs)
        while running:
            index, event = await self.queue.get()
            if event["event"] == "error":
                raise _Failed(event["detail"], event.get("status", 500))
            running -= event["event"] == "done"
            yield index, event

    def close(self) -> None:
        for job in self.jobs:
            job.cancelled = True  # the batcher retires it within one tick, freeing its slot
        for task in self.tasks:
            task.cancel()


async def _deltas(
    flight: _Flight, choices: list[_Choice]
) -> AsyncIterator[tuple[_Choice, str, list[_Token], str | None]]:
    """(choice, new text, its tokens, finish reason or None) as the jobs advance."""
    async for index, event in flight.events():
        choice = choices[index]
        if event["event"] == "token":
            choice.draw(event)
            text, tokens = choice.release(choice.safe_end(), final=False)
            if text or tokens:
                yield choice, text, tokens, None
        else:
            choice.made = event["tokens"]
            text, tokens = choice.release(len(event["text"]), final=True)
            yield choice, text, tokens, _finish_reason(event["stop_reason"])


# ------------------------------------------------------------------------------ responses
@dataclass(frozen=True)
class _Reply:
    """What every object of one response shares."""

    id: str
    created: int
    model: str

    def head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
        }


def _usage(choices: list[_Choice], n: int) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in choices[::n])  # each prompt counted once
    completion = sum(c.made for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _complete(
    choices: list[_Choice], plan: _Plan, reply: _Reply, request: Request, notes: list[str]
) -> JSONResponse:
    """The whole response once every choice is done (an error: OpenAI's error, one line)."""
    flight = _Flight([c.job for c in choices], request)
    texts = {c.index: "" for c in choices}
    tokens: dict[int, list[_Token]] = {c.index: [] for c in choices}
    finish: dict[int, str | None] = {}
    try:
        async for choice, text, new, reason in _deltas(flight, choices):
            texts[choice.index] += text
            tokens[choice.index] += new
            if reason is not None:
                finish[choice.index] = reason
    except _Failed as failed:
        return JSONResponse({"detail": failed.detail}, status_code=failed.status)
    finally:
        flight.close()
    body = reply.head()
    body["choices"] = [
        {
            "text": (c.prompt if plan.echo else "") + texts[c.index],
            "index": c.index,
            "logprobs": _choice_logprobs(c, tokens[c.index], plan),
            "finish_reason": finish[c.index],
        }
        for c in choices
    ]
    body["usage"] = _usage(choices, plan.n)
    if notes:
        body["warnings"] = notes
    return JSONResponse(body)


def _choice_logprobs(choice: _Choice, tokens: list[_Token], plan: _Plan) -> Any:
    if plan.logprobs is None:
        return None
    base = len(choice.prompt) if plan.echo else 0
    return _logprobs_block([*choice.echoed, *[replace(t, offset=t.offset + base) for t in tokens]])


async def _stream(choices: list[_Choice], plan: _Plan, reply: _Reply) -> AsyncIterator[str]:
    """Server-sent events: ``data: {chunk}`` as text becomes safe to send, each choice's last
    with its ``finish_reason``, the usage if asked, then ``data: [DONE]``. An error after the
    stream began is a ``data: {"error": ...}`` event, which the openai client raises."""
    flight = _Flight([c.job for c in choices], None)
    try:
        if plan.echo:
            for c in choices:
                block = _logprobs_block(c.echoed) if plan.logprobs is not None else None
                yield _sse(_chunk(reply, plan, c.index, c.prompt, block, None))
        async for choice, text, tokens, reason in _deltas(flight, choices):
            base = len(choice.prompt) if plan.echo else 0
            block = None if plan.logprobs is None else _logprobs_block(tokens, base)
            yield _sse(_chunk(reply, plan, choice.index, text, block, reason))
        if plan.include_usage:
            yield _sse({**reply.head(), "choices": [], "usage": _usage(choices, plan.n)})
    except _Failed as failed:
        yield _sse({"error": _error(failed.status, failed.detail)})
    finally:
        flight.close()
    yield "data: [DONE]\n\n"


def _chunk(
    reply: _Reply,
    plan: _Plan,
    index: int,
    text: str,
    logprobs: dict[str, list[Any]] | None,
    reason: str | None,
) -> dict[str, Any]:
    chunk = reply.head()
    chunk["choices"] = [
        {"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}
    ]
    if plan.include_usage:
        chunk["usage"] = None
    return chunk


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


# ----------------------------------------------------------------------------- the routes
def add_openai_routes(
    app: FastAPI, *, model_id: str, limits: ServerLimits, batcher: Batcher, make_job: MakeJob
) -> None:
    """``POST /v1/completions``, ``GET /v1/models`` and ``GET /v1/models/{id}`` on ``app``,
    which serves the run ``model_id`` with ``batcher``; ``make_job`` is ``/v1/generate``'s."""
    created = int(time.time())
    card = {"id": model_id, "object": "model", "created": created, "owned_by": "chargen"}
    app.add_middleware(OpenAIErrors)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        """OpenAI's model list: the one run this server serves."""
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{name}")
    def model(name: str) -> dict[str, Any]:
        if name != model_id:
            raise HTTPException(404, f"this server serves only the model {model_id!r}")
        return card

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """OpenAI's legacy completions API over ``/v1/generate`` (this module's docstring
        says where it differs); chargen's sampling fields are accepted by their names."""
        plan = _plan(body, limits, batcher.pieces)
        if batcher.in_flight + len(plan.requests) > limits.max_queue:
            raise HTTPException(
                429,
                f"{len(plan.requests)} choices asked and {limits.max_queue - batcher.in_flight} "
                f"of {limits.max_queue} slots free; try again shortly",
            )
        choices, notes = await _submit(plan, request, make_job, batcher)
        reply = _Reply(f"cmpl-{uuid.uuid4().hex}", int(time.time()), model_id)
        if plan.stream:
            return StreamingResponse(
                _stream(choices, plan, reply),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return await _complete(choices, plan, reply, request, notes)


async def _submit(
    plan: _Plan, request: Request, make_job: MakeJob, batcher: Batcher
) -> tuple[list[_Choice], list[str]]:
    """One batcher job per choice (all ended again if one cannot start), and the prompts'
    tokens scored for ``echo`` with ``logprobs``."""
    chain = partial(_TopTokens, top=plan.logprobs) if plan.logprobs else SamplingChain
    choices: list[_Choice] = []
    notes: list[str] = []
    try:
        for index, req in enumerate(plan.requests):
            job, warned = await make_job(req, request, chain)
            notes += [w for w in warned if w not in notes]
            tokens = len(job.ids) if req.prompt else 0
            stops = StopWatcher(req.stop)
            choices.append(_Choice(index, job, req.prompt, tokens, plan.logprobs, stops))
        if plan.echo and plan.logprobs is not None:
            for first in choices[:: plan.n]:
                if first.prompt:
                    scored = await asyncio.to_thread(
                        _score_prompt, batcher, first.job.ids, plan.logprobs
                    )
                    for c in choices[first.index : first.index + plan.n]:
                        c.echoed = scored
    except BaseException:
        for c in choices:
            c.job.cancelled = True
        raise
    return choices, notes


# --------------------------------------------------------------------------- errors
def _error(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error object for ``message`` (CLI flags named as fields: ``--top-p`` -> top_p)."""
    message = re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", _field_name, " ".join(message.split()))
    param = re.match(r"([a-z_][a-z0-9_]*)\b", message)
    kinds = {404: "not_found_error", 429: "rate_limit_error"}
    return {
        "message": message,
        "type": kinds.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param[1] if param and param[1] in _FIELDS else None,
        "code": "rate_limit_exceeded" if status == 429 else None,
    }


def _field_name(match: re.Match[str]) -> str:
    return match[1].replace("-", "_")


_FIELDS = frozenset(CompletionRequest.model_fields) | frozenset(GenerateRequest.model_fields)


def _is_openai(path: str) -> bool:
    return path in OPENAI_PATHS or path.startswith("/v1/models/")


class OpenAIErrors:
    """ASGI middleware: on this module's paths, an error answer of the app or of the body
    limit (``{"detail": "..."}``) becomes OpenAI's ``{"error": {...}}``, and 422 becomes 400
    (what OpenAI answers for a bad request). An exception no handler took is answered here,
    as ``app``'s catch-all would: logged, one line for the client."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _is_openai(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}  # the start of an error answer, until its body is complete
        body: list[bytes] = []
        started = False

        async def rewrite(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    held.update(message)
                    return
            elif message["type"] == "http.response.body" and held:
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await _send_error(send, held, b"".join(body))
                return
            await send(message)

        try:
            await self.app(scope, receive, rewrite)
        except Exception as exc:
            if started:
                raise
            log.error("request failed", exc_info=exc)
            await send_json(send, 500, {"error": _error(500, failure_line(exc))}, [])


async def _send_error(send: Any, start: dict[str, Any], raw: bytes) -> None:
    status = int(start["status"])
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    detail = None
    if any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers):
        with contextlib.suppress(ValueError):
            data = json.loads(raw)
            detail = data.get("detail") if isinstance(data, dict) else None
    if detail is None:  # not one of ours: passed on as it came
        await send({**start, "headers": [*headers, (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})
        return
    message = detail if isinstance(detail, str) else json.dumps(detail)[:500]
    status = 400 if status == 422 else status
    others = [(k, v) for k, v in headers if k.lower() != b"content-type"]
    await send_json(send, status, {"error": _error(status, message)}, others)
