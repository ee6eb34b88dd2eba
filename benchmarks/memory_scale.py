"""Flat memory on corpora larger than RAM: prepare + train at 10 MB, 100 MB and 1 GB.

For each size it writes a corpus (the running Python's standard library repeated), then runs
in child processes and samples their anonymous (private) memory, RssAnon, every 20 ms:

* ``chargen prepare FILE --out DATA`` (the streaming path), with its throughput in MB/s;
* ``chargen train DATA`` for a fixed number of steps (memory-mapped ids);
* the baseline, ``chargen train FILE`` (the whole text decoded and encoded in memory), at the
  sizes where it fits (it grows with the corpus; skipped above ``--baseline-max-mb``).

    python benchmarks/memory_scale.py [--sizes 10 100 1000] [--steps 30]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def run_sampled(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (seconds, peak RssAnon in MB) sampled from /proc every 20 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return time.perf_counter() - start, peak[0] / 1024


def write_corpus(path: Path, megabytes: int) -> int:
    """The stdlib's text repeated to ``megabytes`` MB; returns the size in bytes."""
    from chargen.corpus import load_corpus

    block = load_corpus("python-stdlib", progress=False).text.encode("utf-8")
    target = megabytes * 1_000_000
    with path.open("wb") as out:
        written = 0
        while written < target:
            piece = block[: target - written]
            out.write(piece)
            written += len(piece)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10, 100, 1000], help="corpus sizes in MB"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--baseline-max-mb", type=int, default=100)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    print(describe())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="chargen-memory-"))
    chargen = [sys.executable, "-m", "chargen"]
    train_flags = [
        "--preset",
        "small",
        "--steps",
        str(args.steps),
        "--sample-length",
        "0",
        "--eval-every",
        str(args.steps),
        "--eval-max-tokens",
        "100000",
        "--errors",
        "replace",
    ]
    rows = []
    for mb in args.sizes:
        corpus = work / f"corpus-{mb}MB.txt"
        size = write_corpus(corpus, mb)
        data = work / f"data-{mb}"
        secs, prep_mem = run_sampled(
            [*chargen, "prepare", str(corpus), "--out", str(data), "--quiet", "--overwrite"]
        )
        _, train_mem = run_sampled(
            [
                *chargen,
                "train",
                str(data),
                "--out",
                str(work / f"run-{mb}"),
                "--overwrite",
                *[f for f in train_flags if f not in ("--errors", "replace")],
            ]
        )
        base = "skipped"
        if mb <= args.baseline_max_mb:
            _, base_mem = run_sampled(
                [
                    *chargen,
                    "train",
                    str(corpus),
                    "--out",
                    str(work / f"base-{mb}"),
                    "--overwrite",
                    *train_flags,
                ]
            )
            base = f"{base_mem:,.0f}"
        rows.append((mb, size / 1e6 / secs, prep_mem, train_mem, base))
        shutil.rmtree(work / f"run-{mb}", ignore_errors=True)
        shutil.rmtree(work / f"base-{mb}", ignore_errors=True)
        corpus.unlink()
        shutil.rmtree(data)
    print(
        "\n| corpus | prepare MB/s | prepare peak RssAnon MB | train (prepared) peak RssAnon MB | baseline train (text in memory) peak RssAnon MB |"
    )
    print("|---:|---:|---:|---:|---:|")
    for mb, speed, prep_mem, train_mem, base in rows:
        print(f"| {mb:,} MB | {speed:.1f} | {prep_mem:,.0f} | {train_mem:,.0f} | {base} |")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
