"""Counter-based random numbers: a uniform in [0, 1) as a pure function of (seed, step).

``u = splitmix64(splitmix64(seed) ^ step * 0x9E3779B97F4A7C15) >> 11 / 2**53``. Because no
generator state is shared, sample ``i`` of a batch draws exactly what it would draw alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (a bijection on 64-bit words with good avalanche)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniforms(seeds: Sequence[int] | torch.Tensor, step: int) -> torch.Tensor:
    """One float64 uniform in [0, 1) per seed for draw number ``step``."""
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.tolist()
    words = np.array([int(s) % 2**64 for s in seeds], dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(_splitmix64(words) ^ (np.uint64(int(step) % 2**64) * _GOLDEN))
    return torch.from_numpy((mixed >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53))
