"""How many threads the server's model step uses: one core is left to the HTTP loop.

The batcher's step (NumPy's BLAS or torch's kernels) and the asyncio loop that writes every
client's events run in one process. With as many compute threads as cores, a step's threads
wait on each other while the HTTP loop holds a core, and both slow down: on 2 cores, 64
streaming clients got 6,500 tokens/s with 2 compute threads and 9,900 with 1
(``benchmarks/serve_load.py``, RESULTS "Playground under load").
"""

from __future__ import annotations

import os

import torch
from threadpoolctl import threadpool_limits

from chargen.errors import ConfigError


def default_threads() -> int:
    """One less than the cores this process may use, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def use_threads(threads: int | None) -> int:
    """Set torch's and the BLAS libraries' thread pools to ``threads`` (default:
    ``default_threads``) for the whole process; the number set."""
    n = default_threads() if threads is None else threads
    if n < 1:
        raise ConfigError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    threadpool_limits(n)  # NumPy's OpenBLAS (and any other BLAS or OpenMP pool loaded)
    return n
