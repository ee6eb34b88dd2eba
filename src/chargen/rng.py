"""Counter-based random numbers: a uniform in [0, 1) as a pure function of (seed, step).

With ``G = 0x9E3779B97F4A7C15`` and the splitmix64 finaliser (Steele, Lea & Flood 2014)::

    mix(x) = z3 where z0 = x + G
                      z1 = (z0 ^ (z0 >> 30)) * 0xBF58476D1CE4E5B9
                      z2 = (z1 ^ (z1 >> 27)) * 0x94D049BB133111EB
                      z3 =  z2 ^ (z2 >> 31)

    u(seed, step) = (mix(mix(seed) ^ (step * G)) >> 11) / 2**53

all in wrapping 64-bit arithmetic (``seed`` and ``step`` taken mod ``2**64``, so any Python
int works). ``u`` is a multiple of ``2**-53`` in ``[0, 1 - 2**-53]``. No generator state is
shared, so sample ``i`` of a batch draws exactly what it would draw alone, on any machine.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made: NumPy callers never load it
    import torch

GOLDEN = 0x9E3779B97F4A7C15
_GOLDEN = np.uint64(GOLDEN)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 step ``mix`` (a bijection on 64-bit words with good avalanche)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _seed_words(seeds: Sequence[int] | torch.Tensor) -> np.ndarray:
    """Seeds as uint64 words (each seed mod 2**64), without a Python loop in the common cases."""
    torch = sys.modules.get("torch")  # not loaded: seeds cannot be a tensor
    if torch is not None and isinstance(seeds, torch.Tensor):
        if seeds.dtype.is_floating_point or seeds.dtype.is_complex or seeds.dtype == torch.bool:
            raise TypeError(f"seeds must be integers, got a {seeds.dtype} tensor")
        return seeds.detach().reshape(-1).cpu().to(torch.int64).numpy().view(np.uint64)
    array = np.asarray(seeds)
    if array.dtype.kind == "i":  # two's complement is already "mod 2**64"
        return array.reshape(-1).astype(np.int64).view(np.uint64)
    if array.dtype.kind == "u":
        return array.reshape(-1).astype(np.uint64)
    # ints beyond int64 (NumPy makes them objects, or floats when mixed with negatives)
    words = np.asarray(seeds, dtype=object).reshape(-1)
    if not all(_is_int(s) for s in words):
        raise TypeError("seeds must be integers")
    return (words & _MASK).astype(np.uint64)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def uniforms(seeds: Sequence[int] | torch.Tensor, step: int) -> torch.Tensor:
    """One float64 uniform in ``[0, 1)`` per seed for draw number ``step``: a (B,) CPU tensor.

    A pure function of ``(seed, step)``: the same pair gives the same value in any batch.
    """
    if not _is_int(step):
        raise TypeError(f"step must be an integer, got {step!r}")
    words = _seed_words(seeds)
    counter = np.uint64((int(step) * GOLDEN) & _MASK)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        mixed = _splitmix64(_splitmix64(words) ^ counter)
    import torch

    return torch.from_numpy((mixed >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53))


def _mix_int(x: int) -> int:
    """``mix`` on one Python int (the same splitmix64 step as ``_splitmix64``)."""
    x = (x + GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class UniformDraws:
    """``draws(step)`` = ``uniforms(seeds, step)`` as a float64 NumPy array, for fixed seeds.

    The seed half of the mix is done once; a single seed is mixed in plain Python ints, which
    is several times cheaper than NumPy calls on one element.
    """

    def __init__(self, seeds: Sequence[int] | torch.Tensor) -> None:
        words = _seed_words(seeds)
        with np.errstate(over="ignore"):
            self.mixed = _splitmix64(words)
        self.single = _mix_int(int(words[0])) if len(words) == 1 else None

    def __call__(self, step: int) -> np.ndarray:
        counter = (int(step) * GOLDEN) & _MASK
        if self.single is not None:
            return np.array([(_mix_int(self.single ^ counter) >> 11) * (1.0 / 2**53)])
        with np.errstate(over="ignore"):
            mixed = _splitmix64(self.mixed ^ np.uint64(counter))
        return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def uniforms_at(mixed: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``u(seed_r, steps_r)`` for every row at once (float64 NumPy), each row at its own step;
    ``mixed`` is ``UniformDraws(seeds).mixed`` (the seeds' half of the mix)."""
    with np.errstate(over="ignore"):
        counters = steps.astype(np.int64).view(np.uint64) * _GOLDEN
        words = _splitmix64(mixed ^ counters)
    return (words >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
