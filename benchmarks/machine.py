"""What every benchmark prints first: the machine, the versions and the command."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
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
