"""How many threads torch uses in the server: one core is left to the HTTP loop.

The batcher's step and the asyncio loop that writes every client's events run in one
process. With as many compute threads as cores, a step's threads wait on each other while the
HTTP loop holds a core, and both slow down: on 2 cores, 64 streaming clients of an LSTM 512
got 6,500 tokens/s with 2 torch threads and 9,900 with 1 (``benchmarks/serve_load.py``, RESULTS
"Playground under load"). The NumPy step's BLAS runs on one thread in any case
(``numpy_step.one_blas_thread``).
"""

from __future__ import annotations

import os

import torch

from chargen.errors import ConfigError


def default_threads() -> int:
    """One less than the cores this process may use, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def use_threads(threads: int | None) -> int:
    """Set torch's thread pool to ``threads`` (default: ``default_threads``) for the whole
    process; the number set."""
    n = default_threads() if threads is None else threads
    if n < 1:
        raise ConfigError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n
