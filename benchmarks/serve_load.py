"""Load on the playground: N concurrent streaming clients on loopback for S seconds.

Each client repeatedly asks ``POST /v1/generate`` with ``stream: true`` for ``--length`` tokens
and reads the events to the end (counting them in the raw bytes, so the clients stay light).
Reported: requests, failures, p50 / p99 of the time to the first token and of the whole
request, and tokens per second over all clients; also one client alone, so the batching gain
is visible as a ratio. The server is ``chargen serve`` in a process of its own, as a user runs
it; ``--baseline REV`` first serves that git revision of the code (a temporary worktree) the
same way, so old and new are measured in one run on one machine.

    python benchmarks/serve_load.py RUN_DIR [--clients 64] [--seconds 20] [--length 100]
                                            [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TOKEN = b"\nevent: token\n"  # each event ends in a blank line, so a token event follows "\n"
DONE = b"event: done\n"


async def _client(
    http: httpx.AsyncClient, url: str, until: float, length: int, seed: int, out: dict[str, Any]
) -> None:
    """One client: requests one after another until ``until``."""
    while time.perf_counter() < until:
        start = time.perf_counter()
        first = None
        tokens = 0
        try:
            body = {"prompt": "the ", "length": length, "seed": seed, "stream": True}
            async with http.stream("POST", url + "/v1/generate", json=body) as res:
                if res.status_code != 200:
                    out["failures"].append(f"HTTP {res.status_code}")
                    continue
                done = False
                tail = b"\n"  # events are counted in the raw bytes: a light client
                async for raw in res.aiter_raw():
                    data = tail + raw
                    count = data.count(TOKEN)
                    if count:
                        tokens += count
                        first = first or time.perf_counter()
                    done = done or DONE in data
                    tail = data[-len(TOKEN) + 1 :]
                if not done or tokens != length:
                    out["failures"].append(f"incomplete: {tokens} tokens")
                    continue
        except httpx.HTTPError as exc:
            out["failures"].append(repr(exc))
            continue
        end = time.perf_counter()
        out["latency"].append(end - start)
        out["first"].append((first or end) - start)
        out["tokens"] += tokens
        seed += 1000


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(url: str, clients: int, seconds: float, length: int) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": [], "first": [], "tokens": 0, "failures": []}
    # the clients are made before the clock starts: making 64 of them (an SSL context each,
    # about 25 ms) inside the run stalled the reading of the first requests by 1.6 s
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=120)) for _ in range(clients)
        ]
        start = time.perf_counter()
        until = start + seconds
        await asyncio.gather(
            *(_client(http, url, until, length, i, out) for i, http in enumerate(https))
        )
        elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(out["latency"]),
        "failures": len(out["failures"]),
        "failure_examples": out["failures"][:3],
        "tokens_per_s": out["tokens"] / elapsed,
        "p50_s": statistics.median(out["latency"]) if out["latency"] else float("nan"),
        "p99_s": _pct(out["latency"], 0.99),
        "first_token_p50_s": statistics.median(out["first"]) if out["first"] else float("nan"),
        "first_token_p99_s": _pct(out["first"], 0.99),
    }


def run_load(
    url: str, clients: int = 64, seconds: float = 20.0, length: int = 100
) -> dict[str, Any]:
    """Drive ``clients`` streaming clients against ``url`` for ``seconds``; return the figures."""
    return asyncio.run(_load(url, clients, seconds, length))


def format_report(result: dict[str, Any]) -> str:
    return (
        f"{result['clients']} clients, {result['seconds']} s: {result['requests']} requests, "
        f"{result['failures']} failed, {result['tokens_per_s']:,.0f} tokens/s; request p50 "
        f"{result['p50_s'] * 1000:.0f} ms, p99 {result['p99_s'] * 1000:.0f} ms; first token p50 "
        f"{result['first_token_p50_s'] * 1000:.0f} ms, p99 {result['first_token_p99_s'] * 1000:.0f} ms"
    )


@contextlib.contextmanager
def served(run_dir: Path, src: Path, port: int, extra: list[str]) -> Iterator[str]:
    """``chargen serve`` of the code in ``src`` as a process of its own (as a user runs it);
    yields its URL once ``/healthz`` answers."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "chargen", "serve", str(run_dir), "--port", str(port)]
    server = subprocess.Popen([*command, *extra], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the server of {src} did not start")
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        print(f"  [{src}] {server.stderr.read().strip()[:300]}")


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The ``src`` folder of ``rev`` of this repository, in a temporary git worktree."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(where), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield where / "src"
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(where)],
                check=False,
                capture_output=True,
            )


def measure(url: str, clients: int, seconds: float, length: int) -> tuple[dict, dict]:
    """One client alone for up to 10 s, then ``clients`` at once for ``seconds``."""
    return run_load(url, 1, min(seconds, 10.0), length), run_load(url, clients, seconds, length)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--baseline", metavar="REV", help="also serve this git revision, first")
    parser.add_argument("--port", type=int, default=8731)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe

    print(describe())
    here = Path(__file__).resolve().parents[1] / "src"
    plans = [("this checkout", contextlib.nullcontext(here))]
    if args.baseline:
        plans.insert(0, (f"baseline {args.baseline}", checkout(args.baseline)))
    failed = False
    for name, source in plans:
        with source as src, served(Path(args.run_dir), src, args.port, []) as url:
            alone, loaded = measure(url, args.clients, args.seconds, args.length)
        print(f"{name}:")
        print("  alone:  " + format_report(alone))
        print("  loaded: " + format_report(loaded))
        if loaded["failures"]:
            print(f"  failures, e.g.: {loaded['failure_examples']}")
        print(f"  gain from batching: x{loaded['tokens_per_s'] / alone['tokens_per_s']:.1f}")
        failed = failed or bool(loaded["failures"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
