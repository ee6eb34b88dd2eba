"""Connection limits (chargen.server.guard): sockets that open and never finish a request
head must not hold the server at 503 for everyone.

The attack: one address opens more connections than uvicorn's ``limit_concurrency`` and sends
half a request line on each. Plain uvicorn answers every other client 503 for as long as the
sockets stay open (the first test shows it, so the others prove a fix of something real);
under the guard the attacker's address holds at most ``per_client`` of them, each closed with
a 408 once ``head_timeout_s`` passes, and another address is served throughout. The attacking
sockets come from 127.0.0.2, the legitimate client from 127.0.0.1 (Linux routes all of
127.0.0.0/8 to loopback).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from chargen.server.guard import GuardedH11, guarded_protocol
from tests.serving import running_app, serve_process

LIMIT = 24  # limit_concurrency of the servers here
ATTACKER = "127.0.0.2"


def _hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", _hello)])


@contextmanager
def serving(http: type | str) -> Iterator[int]:
    """APP under uvicorn with ``LIMIT`` connections and protocol ``http``; yields the port."""
    with running_app(APP, limit_concurrency=LIMIT, http=http) as url:
        yield int(url.rsplit(":", 1)[1])


def half_heads(port: int, count: int) -> list[socket.socket]:
    """``count`` connections from ``ATTACKER``, each with half a request head sent."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), source_address=(ATTACKER, 0))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    time.sleep(0.3)  # the server has taken them all in
    return socks


def status_line(sock: socket.socket, timeout: float) -> bytes:
    """The first line the server wrote on ``sock`` (b"" when it closed silently)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(200).split(b"\r\n")[0]
    except TimeoutError:
        return b"(still open)"
    finally:
        sock.close()


def test_plain_uvicorn_is_held_at_503_by_half_open_heads() -> None:
    with serving("h11") as port:
        socks = half_heads(port, LIMIT + 4)
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 503
            time.sleep(0.5)
        assert status_line(socks[0], 0.5) == b"(still open)"  # no deadline: held as long as wished
        for sock in socks:
            sock.close()


def test_the_guard_serves_others_and_ends_late_heads_with_408() -> None:
    per_client = LIMIT // 2
    with serving(guarded_protocol(1.0, per_client)) as port:
        start = time.monotonic()
        socks = half_heads(port, LIMIT + 4)
        reply = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert (reply.status_code, reply.text) == (200, "hello")
        lines = Counter(status_line(sock, 5) for sock in socks)
        assert lines == {
            b"HTTP/1.1 408 Request Timeout": per_client,
            b"HTTP/1.1 503 Service Unavailable": LIMIT + 4 - per_client,
        }
        assert time.monotonic() - start < 5  # the deadline closed them, not the test's timeout
        # every connection was let go: the attacker's address may connect again
        again = half_heads(port, per_client)
        assert all(status_line(s, 5) == b"HTTP/1.1 408 Request Timeout" for s in again)


def test_an_idle_kept_alive_connection_is_closed_without_a_stray_408() -> None:
    with serving(guarded_protocol(0.5, 4)) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        reply = b""
        while not reply.endswith(b"hello"):  # the head and the body may come in two reads
            piece = sock.recv(500)
            assert piece, reply
            reply += piece
        assert reply.startswith(b"HTTP/1.1 200")
        assert sock.recv(500) == b""  # closed at the deadline, nothing written first
        sock.close()


def test_a_slow_head_that_arrives_in_time_is_served() -> None:
    with serving(guarded_protocol(2.0, 4)) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        for piece in (b"GET / HT", b"TP/1.1\r\nHo", b"st: x\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(0.3)
        assert status_line(sock, 5) == b"HTTP/1.1 200 OK"


def test_each_protocol_class_counts_its_own_connections() -> None:
    one, two = guarded_protocol(1.0, 3), guarded_protocol(2.0, 5)
    assert (one.per_client, two.per_client, one.head_timeout_s) == (3, 5, 1.0)
    assert one.open_per_client is not two.open_per_client
    assert issubclass(one, GuardedH11)


def test_chargen_serve_runs_under_the_guard(trained_run: Path) -> None:
    """The command line wires it: ``--header-timeout`` and ``--client-connections``."""
    flags = ("--max-queue", "2", "--header-timeout", "1", "--client-connections", "6")
    with serve_process(trained_run, *flags) as (proc, url):
        socks = half_heads(int(url.rsplit(":", 1)[1]), 30)  # past its limit, 4 x 2 + 16 = 24
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        lines = Counter(status_line(sock, 5) for sock in socks)
        assert lines[b"HTTP/1.1 408 Request Timeout"] == 6
        assert lines[b"HTTP/1.1 503 Service Unavailable"] == 24
        proc.terminate()
        proc.wait(timeout=15)
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_serve_refuses_bad_limits_in_one_line(trained_run: Path) -> None:
    for flags, said in (
        (["--header-timeout", "0"], "--header-timeout must be a number of seconds > 0, got 0.0"),
        (["--header-timeout", "nan"], "--header-timeout must be"),
        (["--client-connections", "0"], "--client-connections must be in [1, 272]"),
        (["--client-connections", "273"], "got 273"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "chargen", "serve", str(trained_run), *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and said in done.stderr, (flags, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
