"""The jobs of one completion request in flight and the responses made of them: their events
merged into one queue (``_Flight``) and turned into each choice's new text and tokens
(``_deltas``), then either one JSON response once every choice is done
(``complete_response``) or server-sent events as text becomes safe to send
(``stream_response``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from chargen.server.batcher import Job
from chargen.server.openai_choices import Choice, Token, finish_reason, logprobs_block
from chargen.server.openai_errors import error_object
from chargen.server.openai_request import Plan
from chargen.server.watch import watch_job


class _Failed(Exception):
    """A job of the request ended with an error event."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class _Flight:
    """The jobs of one request: their events merged into one queue, a deadline backstop for
    each (``watch.watch_job``), with ``request`` a watch for the client hanging up; ``close`` ends
    every job and task."""

    def __init__(self, jobs: list[Job], request: Request | None) -> None:
        self.jobs = jobs
        self.queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.tasks = [asyncio.ensure_future(self._forward(i, job)) for i, job in enumerate(jobs)]
        self.tasks += [asyncio.ensure_future(watch_job(job, None)) for job in jobs]
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
    flight: _Flight, choices: list[Choice]
) -> AsyncIterator[tuple[Choice, str, list[Token], str | None]]:
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
            yield choice, text, tokens, finish_reason(event["stop_reason"])


# ------------------------------------------------------------------------------ responses
@dataclass(frozen=True)
class Reply:
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


def _usage(choices: list[Choice], n: int) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in choices[::n])  # each prompt counted once
    completion = sum(c.made for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def complete_response(
    choices: list[Choice], plan: Plan, reply: Reply, request: Request, notes: list[str]
) -> JSONResponse:
    """The whole response once every choice is done (an error: OpenAI's error, one line)."""
    flight = _Flight([c.job for c in choices], request)
    texts = {c.index: "" for c in choices}
    tokens: dict[int, list[Token]] = {c.index: [] for c in choices}
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


def _choice_logprobs(choice: Choice, tokens: list[Token], plan: Plan) -> Any:
    if plan.logprobs is None:
        return None
    base = len(choice.prompt) if plan.echo else 0
    return logprobs_block([*choice.echoed, *[replace(t, offset=t.offset + base) for t in tokens]])


async def stream_response(choices: list[Choice], plan: Plan, reply: Reply) -> AsyncIterator[str]:
    """Server-sent events: ``data: {chunk}`` as text becomes safe to send, each choice's last
    with its ``finish_reason``, the usage if asked, then ``data: [DONE]``. An error after the
    stream began is a ``data: {"error": ...}`` event, which the openai client raises."""
    flight = _Flight([c.job for c in choices], None)
    try:
        if plan.echo:
            for c in choices:
                block = logprobs_block(c.echoed) if plan.logprobs is not None else None
                yield _sse(_chunk(reply, plan, c.index, c.prompt, block, None))
        async for choice, text, tokens, reason in _deltas(flight, choices):
            base = len(choice.prompt) if plan.echo else 0
            block = None if plan.logprobs is None else logprobs_block(tokens, base)
            yield _sse(_chunk(reply, plan, choice.index, text, block, reason))
        if plan.include_usage:
            yield _sse({**reply.head(), "choices": [], "usage": _usage(choices, plan.n)})
    except _Failed as failed:
        yield _sse({"error": error_object(failed.status, failed.detail)})
    finally:
        flight.close()
    yield "data: [DONE]\n\n"


def _chunk(
    reply: Reply,
    plan: Plan,
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
