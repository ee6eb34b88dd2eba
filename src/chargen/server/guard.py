"""Connection limits uvicorn lacks, so that one client cannot shut everyone else out.

uvicorn answers 503 to every request once ``limit_concurrency`` connections are open, and it
counts a connection from the moment it opens, whether or not a request ever arrives on it; it
has no deadline for a request's head either. A few hundred sockets that send half a request
line and wait (a "slowloris") would so hold the server at 503 for everyone, as long as they
like. ``guarded_protocol`` gives uvicorn's h11 protocol two limits:

* **a deadline for the request head**: the head (request line and headers) must be complete
  within ``head_timeout_s`` of the connection opening, or of the previous response on a kept-
  alive connection; else the connection is closed (with a 408 when part of a head came). (Bodies have their own deadline,
  ``body.BoundedBody``; an idle kept-alive connection, uvicorn's ``timeout_keep_alive``.)
* **connections per client address**: past ``per_client`` open connections from one address,
  a new one is answered 503 at once and closed, so one address never holds the whole
  ``limit_concurrency`` (behind a reverse proxy every client has the proxy's address: raise
  ``--client-connections`` there).

Written by hand, as a subclass of uvicorn's own protocol: neither uvicorn nor Starlette has
these limits (a header timeout is a long-standing uvicorn request), and the protocol is the
only place that sees a connection before its request does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0  # default --header-timeout


def _raw_response(status: str, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection (written before h11 has a request)."""
    body = (message + "\n").encode("utf-8")
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a per-address connection cap
    (the class attributes; ``guarded_protocol`` makes a subclass with its own values)."""

    head_timeout_s: ClassVar[float] = HEAD_TIMEOUT_S
    per_client: ClassVar[int] = 64
    open_per_client: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = ""
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False  # bytes of the awaited head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        if self.open_per_client[self._address] >= self.per_client:
            transport.write(
                _raw_response(
                    "503 Service Unavailable",
                    f"too many connections from your address (at most {self.per_client} open "
                    "at once); close some, or raise the server's --client-connections",
                )
            )
            transport.close()
            return
        self.open_per_client[self._address] += 1
        self._counted = True
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._counted:
            self._counted = False
            self.open_per_client[self._address] -= 1
            if self.open_per_client[self._address] <= 0:
                del self.open_per_client[self._address]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._head_begun = self._head_begun or self._head_timer is not None
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole head has arrived
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        self._start_head_timer()  # the next head on a kept-alive connection has its deadline
        super().on_response_complete()  # may read a pipelined head: handle_events stops it

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_begun = False
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        """The deadline passed: close, unless a head arrived. A client that began a head is
        told 408 first; a silent one is closed silently (an idle kept-alive connection may be
        about to send, and must not read a 408 as the answer to its next request)."""
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_begun and self.conn.our_state is h11.IDLE:
            self.transport.write(
                _raw_response(
                    "408 Request Timeout",
                    f"the request head did not arrive within {self.head_timeout_s:g} s",
                )
            )
        self.transport.close()


def guarded_protocol(head_timeout_s: float, per_client: int) -> type[GuardedH11]:
    """A ``GuardedH11`` subclass with these limits and its own count of open connections, to
    pass as ``uvicorn.run(..., http=...)``."""
    limits = {
        "head_timeout_s": head_timeout_s,
        "per_client": per_client,
        "open_per_client": Counter(),
    }
    return type("GuardedH11", (GuardedH11,), limits)
