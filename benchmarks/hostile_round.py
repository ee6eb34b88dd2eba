"""The hostile-input round against a real ``chargen serve``: attempt, expected, observed.

Trains a default-preset model (LSTM 512) for a few steps, serves it on 127.0.0.1, and makes
each attempt of the round with raw sockets or httpx, every loop bounded in count and time.
The baseline in the same run is a bystander's 5-token request on the idle server, so the cost
one hostile request puts on others is a ratio.

    python benchmarks/hostile_round.py [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def row(attempt: str, expected: str, observed: str) -> None:
    print(f"| {attempt} | {expected} | {observed} |", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(run: Path, port: int, *flags: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargen", "serve", str(run), "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def raw(port: int, head: str, parts: list[bytes], timeout: float = 30) -> tuple[str, float]:
    """Status line and seconds to the answer of a hand-made request."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head.encode("latin-1"))
            for part in parts:
                sock.sendall(part)
        except OSError:
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data:
                    break
        except OSError:
            pass
    return data.split(b"\r\n", 1)[0].decode("latin-1"), time.perf_counter() - start


def head(extra: str) -> str:
    return (
        "POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )


def chunked(payload: bytes, size: int = 65_536) -> list[bytes]:
    return [
        *(
            f"{len(payload[i : i + size]):x}\r\n".encode() + payload[i : i + size] + b"\r\n"
            for i in range(0, len(payload), size)
        ),
        b"0\r\n\r\n",
    ]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bystander(url: str) -> float:
    start = time.perf_counter()
    res = httpx.post(f"{url}/v1/generate", json={"length": 5, "seed": 3}, timeout=120)
    assert res.status_code == 200, res.text
    return time.perf_counter() - start


def while_running(url: str, hostile: Callable[[], Any], n: int) -> tuple[float, list[Any]]:
    """Median bystander latency while ``n`` hostile calls run, and the hostile results."""
    with concurrent.futures.ThreadPoolExecutor(n + 1) as pool:
        futures = [pool.submit(hostile) for _ in range(n)]
        time.sleep(0.2)
        latencies = [bystander(url) for _ in range(3)]
        results = [f.result() for f in futures]
    return statistics.median(latencies), results


def slowed(waited: float, idle: float) -> str:
    """The bystander's median latency beside the idle baseline."""
    return f"bystander {waited * 1000:.0f} ms (idle {idle * 1000:.0f} ms)"


def detail(res: httpx.Response) -> str:
    try:
        return f"{res.status_code} `{res.json()['detail'][:70]}`"
    except (ValueError, KeyError, TypeError):
        return f"{res.status_code} (no JSON detail)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", help="a run folder to serve (default: train one)")
    args = parser.parse_args()
    print(describe())
    work = Path(tempfile.mkdtemp(prefix="chargen-hostile-"))
    run = Path(args.run) if args.run else work / "run"
    if not args.run:
        subprocess.run(
            [sys.executable, "-m", "chargen", "train", "python-docs", "--out", str(run)]
            + ["--steps", "5", "--sample-length", "0"],
            check=True,
            capture_output=True,
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(run, port)
    try:
        hostile_round(url, port, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    sigterm_round(run)


def hostile_round(url: str, port: int, proc: subprocess.Popen[str]) -> None:
    idle = statistics.median(bystander(url) for _ in range(5))
    print(f"\nbaseline: a 5-token request on the idle server takes {idle * 1000:.0f} ms\n")
    print("| attempt | expected | observed |\n|---|---|---|")
    for field, value in (
        ("repetition_penalty", 1e-300),
        ("frequency_penalty", 1e300),
        ("presence_penalty", 1e308),
    ):
        body = {"prompt": "the the the ", "length": 50, field: value}
        res = httpx.post(f"{url}/v1/generate", json=body, timeout=30)
        after = bystander(url)
        row(
            f"`{field}: {value:g}`",
            "422, one line; generation goes on",
            f"{detail(res)}; next request 200 in {after * 1000:.0f} ms",
        )

    before = rss_mb(proc.pid)
    big = json.dumps({"prompt": "x" * 300_000_000}).encode()
    status, took = raw(port, head("Transfer-Encoding: chunked\r\n"), chunked(big))
    row(
        "chunked upload, no length, 300 MB",
        "413 at 64 KiB, memory flat",
        f"{status[9:]} in {took:.2f} s; RSS {before:.0f} → {rss_mb(proc.pid):.0f} MB",
    )
    mb = json.dumps({"prompt": "the " * 250_000}).encode()
    status, took = raw(
        port, head("Content-Length: 12\r\nTransfer-Encoding: chunked\r\n"), chunked(mb)
    )
    row("`Content-Length: 12` + chunked 1 MB", "413 (or 400)", f"{status[9:]} in {took:.2f} s")

    def chunked_prompt() -> str:
        body = json.dumps({"prompt": "the " * 80_000, "length": 5}).encode()
        return raw(port, head("Transfer-Encoding: chunked\r\n"), chunked(body, 4096))[0]

    waited, statuses = while_running(url, chunked_prompt, 4)
    row(
        "4 × chunked 320 KB prompts",
        "413; bystanders unharmed",
        f"{statuses[0][9:]}; {slowed(waited, idle)}",
    )
    status, took = raw(port, head("Content-Length: 1000\r\n"), [b'{"length": 1'])
    row("promise 1,000 bytes, send 12", "408 within 10 s", f"{status[9:]} after {took:.1f} s")

    # a slowloris: more half-sent request heads from one address than the server's connections
    start = time.perf_counter()
    held = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", port), 30, source_address=("127.0.0.2", 0))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    time.sleep(0.3)
    other = httpx.get(f"{url}/healthz", timeout=5).status_code
    lines: dict[bytes, int] = {}
    for sock in held:
        first = sock.recv(100).split(b"\r\n")[0][9:12]
        lines[first] = lines.get(first, 0) + 1
        sock.close()
    row(
        "300 connections from one address, each half a request line (slowloris)",
        "others served; the address's share 408 at 10 s, the rest 503",
        f"another address {other}; "
        + ", ".join(f"{n} × {code.decode() or 'closed'}" for code, n in sorted(lines.items()))
        + f", all done {time.perf_counter() - start:.1f} s after the first",
    )

    def long_prompt() -> int:
        body = {"prompt": "the " * 4096, "length": 5}
        return httpx.post(f"{url}/v1/generate", json=body, timeout=120).status_code

    waited, codes = while_running(url, long_prompt, 4)
    row(
        "4 × 16,384-char prompts (the cap) + a 5-token bystander",
        "read in slices; bystander waits little",
        f"{set(codes)}; {slowed(waited, idle)}",
    )
    res = httpx.post(f"{url}/v1/generate", json={"prompt": "the " * 16_000}, timeout=30)
    row("64 KB prompt", "422 past 16,384 characters", detail(res))
    res = httpx.post(f"{url}/v1/generate", json={"stop": ["ab"] * 12_900}, timeout=30)
    row("12,900 stop strings", "422 past 16", detail(res))

    def sixteen_stops() -> int:
        body = {"length": 400, "stop": ["q" * 254 + f"{i:02d}" for i in range(16)]}
        return httpx.post(f"{url}/v1/generate", json=body, timeout=120).status_code

    waited, codes = while_running(url, sixteen_stops, 4)
    row(
        "4 × 16 stop strings of 256 chars, 400 tokens",
        "bystander slowed little",
        f"{set(codes)}; {slowed(waited, idle)}",
    )

    body = json.dumps({"length": 2000}).encode()
    socks = []
    for _ in range(64):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head(f"Content-Length: {len(body)}\r\n").encode() + body)
        socks.append(sock)
    time.sleep(0.3)
    for sock in socks:
        sock.close()
    start = time.perf_counter()
    for _ in range(400):
        if httpx.get(f"{url}/healthz", timeout=5).json()["in_flight"] == 0:
            break
        time.sleep(0.01)
    freed = time.perf_counter() - start
    res = httpx.post(f"{url}/v1/generate", json={"length": 5}, timeout=30)
    row(
        "64 × length 2000, client gone after 0.3 s",
        "slots free within a tick",
        f"all 64 free {freed * 1000:.0f} ms after the hang-ups; next request {res.status_code}",
    )
    for name, payload in (
        ('`{"length": "\\ud800"}`', b'{"length": "\\ud800"}'),
        ('`{"prompt": "\\ud800"}`', b'{"prompt": "\\ud800"}'),
        ("`1e400`", b'{"length": 1e400}'),
        ("5,000-deep `[[[…]]]`", b"[" * 5000 + b"]" * 5000),
        ('`{"temprature": 0.5}`', b'{"temprature": 0.5}'),
    ):
        res = httpx.post(
            f"{url}/v1/generate", content=payload, headers={"content-type": "application/json"}
        )
        row(name, "4xx, one line", detail(res))
    info = httpx.get(f"{url}/v1/model").text
    row(
        "`GET /v1/model`",
        "corpus by name only",
        "source "
        + json.loads(info)["config"]["data"]["source"]
        # a path would show as a JSON string starting with "/" ("chars/s" in a note is none)
        + ("" if not re.search(r'"/[^"]*"', info) else " (a path!)"),
    )


def sigterm_round(run: Path) -> None:
    port = free_port()
    proc = serve(run, port, "--max-length", "1000000")
    hung = socket.create_connection(("127.0.0.1", port), timeout=10)
    hung.sendall(head("Content-Length: 1000\r\n").encode() + b'{"len')
    stream = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"length": 1_000_000, "stream": True}).encode()
    stream.sendall(head(f"Content-Length: {len(body)}\r\n").encode() + body)
    stream.recv(100)
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
        took = f"exit {proc.returncode} after {time.perf_counter() - start:.2f} s"
    except subprocess.TimeoutExpired:
        proc.kill()
        took = "still running after 30 s"
    row("SIGTERM with an open stream and a half-sent body", "ends within 2 s", took)


if __name__ == "__main__":
    main()
