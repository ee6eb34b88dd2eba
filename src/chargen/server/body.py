"""Request bodies read under limits, before the application sees them (a pure ASGI middleware).

A body announced with ``Content-Length`` is refused at once when the number is over the
limit, and every body, chunked or not, is counted as it arrives (the header is not trusted), so a chunked upload or a ``Content-Length`` that lies
stops at the limit (413). The whole body must arrive within ``timeout_s`` (408), so a client
that promises 1,000 bytes and sends 12 cannot hold the connection. A JSON body nested deeper
than Python's parser can follow is answered 400 here, not as a server error later.

The application then receives the body in one message; later ``receive()`` calls go to the
server as before, so a route can still learn that its client disconnected. The time the
request arrived is left in ``scope["state"]["arrived"]`` (``request.state.arrived``) so that a
request's time limit counts from its first byte.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body passed the byte limit while it arrived."""


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


class BoundedBody:
    """ASGI middleware: at most ``max_bytes`` of body, all of it within ``timeout_s`` seconds."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["arrived"] = time.monotonic()
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 413, f"request body over {self.max_bytes} bytes")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except BodyTooLarge:
            await _answer(send, 413, f"request body over {self.max_bytes} bytes")
            return
        except asyncio.TimeoutError:
            await _answer(send, 408, f"request body not received within {self.timeout_s:g} s")
            return
        except ClientGone:
            return
        if body and _too_deep(body):
            await _answer(send, 400, "request body: JSON nested too deeply")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _too_deep(body: bytes) -> bool:
    """True when ``body`` is JSON nested past what ``json.loads`` can parse (RecursionError)."""
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:  # not JSON (or not UTF-8): the route's own validation answers that
        return False
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then hands on to the server's ``receive``."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(send: Send, status: int, detail: str) -> None:
    await send_json(send, status, {"detail": detail}, [(b"connection", b"close")])


async def send_json(send: Send, status: int, data: Any, headers: list[tuple[bytes, bytes]]) -> None:
    """A whole JSON response through ASGI ``send``, with ``headers`` besides its own."""
    payload = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
