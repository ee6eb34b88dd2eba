"""OpenAI's shape for errors on the OpenAI-compatible paths: ``OpenAIErrors``, an ASGI
middleware, rewrites every ``{"detail": ...}`` error answer of the app as
``{"error": {"message", "type", "param", "code"}}`` (``error_object``), 422 as 400, and
answers an exception no handler took with one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from chargen.server.batcher import failure_line
from chargen.server.body import send_json
from chargen.server.openai_request import CompletionRequest
from chargen.server.requests import GenerateRequest

log = logging.getLogger("chargen.server")

OPENAI_PATHS = ("/v1/completions", "/v1/models")


def error_object(status: int, message: str) -> dict[str, Any]:
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
    """ASGI middleware: on the OpenAI paths, an error answer of the app or of the body
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
            await send_json(send, 500, {"error": error_object(500, failure_line(exc))}, [])


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
    await send_json(send, status, {"error": error_object(status, message)}, others)
