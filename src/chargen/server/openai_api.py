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

This module holds the routes; the request and its mapping are ``openai_request.py``'s, each
choice's tokens and log-probabilities ``openai_choices.py``'s, the responses (whole or
streamed) ``openai_replies.py``'s, and OpenAI's error shape ``openai_errors.py``'s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from chargen.chain import SamplingChain
from chargen.generate import StopWatcher
from chargen.server.batcher import Batcher, Job
from chargen.server.openai_choices import Choice, TopTokens
from chargen.server.openai_choices import score_prompt as _score_prompt  # tests replace it here
from chargen.server.openai_errors import OPENAI_PATHS, OpenAIErrors
from chargen.server.openai_replies import Reply, complete_response, stream_response
from chargen.server.openai_request import (
    DEFAULT_MAX_TOKENS,
    MAX_LOGPROBS,
    SEED_SPACE,
    CompletionRequest,
    Plan,
    StreamOptions,
    plan_request,
)
from chargen.server.requests import ServerLimits

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_LOGPROBS",
    "OPENAI_PATHS",
    "SEED_SPACE",
    "CompletionRequest",
    "MakeJob",
    "OpenAIErrors",
    "StreamOptions",
    "add_openai_routes",
]

MakeJob = Callable[..., Awaitable[tuple[Job, list[str]]]]
"""``make_job(req, request, chain)`` of ``app.create_app``: validate, build, submit."""


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
        plan = plan_request(body, limits, batcher.pieces)
        if batcher.in_flight + len(plan.requests) > limits.max_queue:
            raise HTTPException(
                429,
                f"{len(plan.requests)} choices asked and {limits.max_queue - batcher.in_flight} "
                f"of {limits.max_queue} slots free; try again shortly",
            )
        choices, notes = await _submit(plan, request, make_job, batcher)
        reply = Reply(f"cmpl-{uuid.uuid4().hex}", int(time.time()), model_id)
        if plan.stream:
            return StreamingResponse(
                stream_response(choices, plan, reply),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return await complete_response(choices, plan, reply, request, notes)


async def _submit(
    plan: Plan, request: Request, make_job: MakeJob, batcher: Batcher
) -> tuple[list[Choice], list[str]]:
    """One batcher job per choice (all ended again if one cannot start), and the prompts'
    tokens scored for ``echo`` with ``logprobs``."""
    chain = partial(TopTokens, top=plan.logprobs) if plan.logprobs else SamplingChain
    choices: list[Choice] = []
    notes: list[str] = []
    try:
        for index, req in enumerate(plan.requests):
            job, warned = await make_job(req, request, chain)
            notes += [w for w in warned if w not in notes]
            tokens = len(job.ids) if req.prompt else 0
            stops = StopWatcher(req.stop)
            choices.append(Choice(index, job, req.prompt, tokens, plan.logprobs, stops))
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
