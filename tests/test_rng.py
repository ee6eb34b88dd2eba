"""Counter-based uniforms: a pure function of (seed, step), checked against plain Python ints."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen.rng import uniforms

MASK = (1 << 64) - 1
G = 0x9E3779B97F4A7C15
any_int = st.one_of(st.integers(-(2**63), 2**64), st.integers(-(2**80), 2**80))


def _mix(x: int) -> int:
    """splitmix64 in Python ints, written from the published algorithm."""
    z = (x + G) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _reference(seed: int, step: int) -> float:
    word = _mix(_mix(seed & MASK) ^ ((step * G) & MASK))
    return (word >> 11) / 2**53


@settings(max_examples=100, deadline=None)
@given(st.lists(any_int, min_size=1, max_size=20), any_int)
def test_uniforms_equal_the_python_reference_in_any_batch(seeds: list[int], step: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings from the wrapping arithmetic
        batch = uniforms(seeds, step)
    assert batch.dtype == torch.float64 and batch.shape == (len(seeds),)
    assert batch.tolist() == [_reference(s, step) for s in seeds]
    # the same (seed, step) gives the same value whatever else is in the batch
    assert batch.tolist() == [float(uniforms([s], step)[0]) for s in seeds]


def test_seed_containers_and_reduction_mod_2_64() -> None:
    seeds = [0, 1, -1, 2**63, 12345]
    expected = uniforms(seeds, 9)
    assert torch.equal(uniforms(torch.tensor([0, 1, -1, -(2**63), 12345]), 9), expected)
    assert torch.equal(
        uniforms(np.array(seeds[:2] + [2**64 - 1, 2**63, 12345], np.uint64), 9), expected
    )
    assert torch.equal(uniforms([s + 5 * 2**64 for s in seeds], 9), expected)
    assert torch.equal(uniforms(seeds, 9 + 2**64), expected)
    assert uniforms([], 0).shape == (0,)


def test_bad_seeds_and_steps_are_refused() -> None:
    with pytest.raises(TypeError):
        uniforms([1.5], 0)
    with pytest.raises(TypeError):
        uniforms(torch.tensor([0.5]), 0)
    with pytest.raises(TypeError):
        uniforms([1], 0.5)  # type: ignore[arg-type]


def test_golden_value_pins_the_stream() -> None:
    # generated text must not change between versions for the same seed
    assert uniforms([12345], 3).tolist() == [0.6522727024307261]


def test_different_seeds_and_steps_differ() -> None:
    by_seed = uniforms(list(range(10_000)), 0)
    assert len(set(by_seed.tolist())) == 10_000
    by_step = torch.cat([uniforms([7], t) for t in range(2_000)])
    assert len(set(by_step.tolist())) == 2_000
    assert not torch.equal(uniforms([1, 2], 0), uniforms([1, 2], 1))


def test_values_look_uniform() -> None:
    draws = uniforms(list(range(100_000)), step=3).numpy()
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert np.all(draws * 2**53 == np.floor(draws * 2**53))  # 53-bit multiples of 2**-53
    assert abs(draws.mean() - 0.5) < 0.005  # sd of the mean ~ 0.0009
    assert abs(draws.var() - 1 / 12) < 0.002
    counts = np.histogram(draws, bins=20, range=(0, 1))[0]
    chi2 = float(((counts - 5_000) ** 2 / 5_000).sum())
    assert chi2 < 60  # 19 degrees of freedom: p < 1e-5 beyond this
    # consecutive steps of one seed are not correlated
    steps = np.array([float(uniforms([42], t)[0]) for t in range(5_000)])
    assert abs(np.corrcoef(steps[:-1], steps[1:])[0, 1]) < 0.05
