"""Load on the playground: N concurrent streaming clients on loopback for S seconds.

Each client repeatedly asks ``POST /v1/generate`` with ``stream: true`` for ``--length`` tokens
and reads the events to the end. Reported: requests, failures, p50 / p99 of the time to the
first token and of the whole request, and tokens per second over all clients. The baseline in
the same run is one client alone, so the batching gain is visible as a ratio.

    python benchmarks/serve_load.py RUN_DIR [--clients 64] [--seconds 20] [--length 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx


async def _client(url: str, until: float, length: int, seed: int, out: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
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
                    async for line in res.aiter_lines():
                        if line.startswith("event: token"):
                            tokens += 1
                            first = first or time.perf_counter()
                        elif line.startswith("event: done"):
                            done = True
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
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_client(url, until, length, i, out) for i in range(clients)))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--length", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from machine import describe

    from tests.serving import running_server

    print(describe())
    with running_server(Path(args.run_dir)) as url:
        alone = run_load(url, 1, min(args.seconds, 10.0), args.length)
        loaded = run_load(url, args.clients, args.seconds, args.length)
    print("baseline: " + format_report(alone))
    print("loaded:   " + format_report(loaded))
    if loaded["failures"]:
        print(f"failures, e.g.: {loaded['failure_examples']}")
    print(f"throughput gain from batching: x{loaded['tokens_per_s'] / alone['tokens_per_s']:.1f}")
    return 1 if loaded["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
