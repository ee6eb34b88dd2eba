"""What every benchmark prints first: the machine, the versions and the command."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def describe(argv: list[str] | None = None) -> str:
    """One block of text naming CPU, cores, Python, PyTorch and the command line."""
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        f"machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, GPU {gpu}",
        f"versions: Python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}",
        f"command: {' '.join(argv if argv is not None else [sys.executable, *sys.argv])}",
    ]
    return "\n".join(lines)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MB of this process (or of its finished children)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def eval_records(run: str | Path) -> list[dict]:
    """The evaluation records of a run's ``metrics.jsonl``, in order."""
    lines = Path(run, "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "eval"]


# how each shared corpus is read (nietzsche.txt is latin-1)
CORPUS_FLAGS = {"nietzsche": ["--encoding", "latin-1"]}


def train_command(source: str, out: str | Path, data_dir: str | Path, *flags: str) -> list[str]:
    """``python -m chargen train SOURCE`` from ``data_dir`` into ``out`` (overwritten), no samples."""
    return [
        sys.executable, "-m", "chargen", "train", source, "--data-dir", str(data_dir),
        *CORPUS_FLAGS.get(source, []), "--out", str(out), "--overwrite", "--sample-length", "0",
        *flags,
    ]  # fmt: skip


def run_training(source: str, data_dir: str | Path, *flags: str) -> tuple[float, list[dict]]:
    """Train into a temporary folder; (process wall seconds, its evaluation records).

    A failed run ends the benchmark with the command and the end of its stderr.
    """
    with tempfile.TemporaryDirectory(prefix="chargen-bench-") as out:
        cmd = train_command(source, out, data_dir, *flags)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        return wall, eval_records(out)
