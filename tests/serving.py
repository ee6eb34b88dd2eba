"""Helpers for tests that need a real server on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chargen.server.app import ServerLimits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_app(app: Any, **settings: Any) -> Iterator[str]:
    """uvicorn serving the ASGI ``app`` on 127.0.0.1 in a thread (``settings``: more
    ``uvicorn.Config`` arguments); yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="critical",
            timeout_graceful_shutdown=1,
            **settings,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def running_server(run: Path, limits: ServerLimits | None = None) -> Iterator[str]:
    """uvicorn serving ``run`` in a thread; yields its base URL."""
    from chargen.server.app import create_app

    with running_app(create_app(run, limits)) as url:
        yield url


def nan_copy(run: Path, folder: Path) -> Path:
    """A copy of ``run`` in ``folder`` whose head weights hold NaN (a model gone bad)."""
    import shutil

    from safetensors.numpy import load_file, save_file

    copy = folder / "run"
    shutil.copytree(run, copy)
    for name in ("best.safetensors", "model.safetensors"):
        if (copy / name).exists():
            tensors = load_file(copy / name)
            key = next(k for k in tensors if k.startswith("head.") and "weight" in k)
            tensors[key][0, 0] = float("nan")
            save_file(tensors, copy / name)
    return copy


def json_values(text: int, width: int, leaves: int) -> Any:
    """A hypothesis strategy of any JSON value (NaN and Infinity too: Python's JSON parser takes
    them): strings of up to ``text`` characters, lists and objects of up to ``width`` items, at
    most ``leaves`` leaves."""
    from hypothesis import strategies as st

    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats()
        | st.text(max_size=text),
        lambda inner: (
            st.lists(inner, max_size=width) | st.dictionaries(st.text(max_size=3 * width), inner)
        ),
        max_leaves=leaves,
    )


@contextmanager
def serve_process(run: Path, *flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``chargen serve RUN FLAGS`` as a process on a free port, once it answers ``/healthz``;
    yields (process, base URL) and kills it after if it still runs."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargen", "serve", str(run), "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
