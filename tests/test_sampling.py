"""Sampling rules: exact maths of each processor, property-based checks, and draws."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen import reweight_distribution
from chargen.errors import SamplingError
from chargen.rng import uniforms
from chargen.sampling import (
    FrequencyPenalty,
    MinP,
    NoRepeatNGram,
    PresencePenalty,
    RepetitionPenalty,
    SamplingConfig,
    TopK,
    TopP,
    TypicalP,
    build_processors,
    entropy,
    process_logits,
    select_next,
)

EMPTY = torch.zeros((1, 0), dtype=torch.long)
logit_rows = st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=12)


def _kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits[0]).nonzero()[:, 0].tolist()


# ---------------------------------------------------------------- reweight_distribution
def test_reweight_matches_the_seed_formula() -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    for t in (0.2, 0.5, 1.0, 1.2):
        expected = np.exp(np.log(p) / t) / np.sum(np.exp(np.log(p) / t))
        np.testing.assert_allclose(reweight_distribution(p, t), expected, rtol=1e-12)


def test_reweight_identity_one_hot_and_zeros_without_warnings() -> None:
    p = np.array([0.0, 0.2, 0.0, 0.8])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        np.testing.assert_allclose(reweight_distribution(p, 1.0), p, rtol=1e-12)
        for t in (0.0, 1e-6):
            assert reweight_distribution(p, t).tolist() == [0.0, 0.0, 0.0, 1.0]
        out = reweight_distribution(p, 0.5)
    assert out[0] == 0.0 and out[2] == 0.0
    assert out.sum() == pytest.approx(1.0)


def test_reweight_torch_and_batches() -> None:
    p = torch.tensor([[0.1, 0.9], [0.5, 0.5]], dtype=torch.float64)
    out = reweight_distribution(p, 0.5)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, dtype=torch.float64))
    assert out[0, 1] == pytest.approx(0.81 / 0.82)


@pytest.mark.parametrize("t", [-0.1, float("nan"), float("inf")])
def test_reweight_refuses_bad_temperatures(t: float) -> None:
    with pytest.raises(SamplingError, match="--temperature"):
        reweight_distribution(np.array([0.5, 0.5]), t)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=10).filter(lambda v: sum(v) > 1e-6),
    st.floats(0.05, 5),
)
def test_reweight_is_a_distribution(values: list[float], t: float) -> None:
    out = reweight_distribution(np.array(values), t)
    assert np.all(out >= 0) and out.sum() == pytest.approx(1.0)
    assert np.all(out[np.array(values) == 0] == 0)


# ---------------------------------------------------------------- processors
@settings(max_examples=100, deadline=None)
@given(logit_rows, st.integers(1, 15))
def test_top_k_keeps_exactly_k(row: list[float], k: int) -> None:
    logits = torch.tensor([row])
    row = logits[0].tolist()  # the float32 values top-k compares
    kept = _kept(TopK(k)(logits, EMPTY))
    assert len(kept) == min(k, len(row))
    threshold = min(row[i] for i in kept)
    assert all(row[i] <= threshold for i in range(len(row)) if i not in kept)


def test_top_k_ties_keep_the_lower_ids() -> None:
    assert _kept(TopK(2)(torch.tensor([[1.0, 3.0, 3.0, 3.0]]), EMPTY)) == [1, 2]


@settings(max_examples=100, deadline=None)
@given(logit_rows, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(row: list[float], p: float) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    probs = torch.softmax(logits, -1)[0].tolist()
    kept = _kept(TopP(p)(logits, EMPTY))
    order = sorted(range(len(row)), key=lambda i: (-probs[i], i))
    # brute force: the shortest prefix of the descending order whose mass reaches p
    need = next(n for n in range(1, len(row) + 1) if sum(probs[i] for i in order[:n]) >= p - 1e-12)
    assert sorted(kept) == sorted(order[:need])


@settings(max_examples=100, deadline=None)
@given(logit_rows, st.floats(0.0, 1.0))
def test_min_p_keeps_tokens_at_or_above_threshold(row: list[float], min_p: float) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    probs = torch.softmax(logits, -1)[0]
    kept = _kept(MinP(min_p)(logits, EMPTY))
    assert kept == (probs >= min_p * probs.max()).nonzero()[:, 0].tolist()


@settings(max_examples=100, deadline=None)
@given(logit_rows, st.floats(0.01, 1.0))
def test_typical_p_keeps_the_most_typical_token(row: list[float], p: float) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)[0]
    h = float(-(logp.exp() * logp).sum())
    most_typical = int((-logp - h).abs().argmin())
    kept = _kept(TypicalP(p)(logits, EMPTY))
    assert most_typical in kept and kept


@settings(max_examples=100, deadline=None)
@given(
    logit_rows,
    st.floats(0, 3),
    st.integers(0, 20),
    st.floats(0.01, 1),
    st.floats(0, 1),
    st.floats(0.5, 2),
)
def test_the_chain_always_gives_a_valid_distribution(row, t, k, p, min_p, rep) -> None:
    cfg = SamplingConfig(
        temperature=t, top_k=k or None, top_p=p, min_p=min_p, typical_p=p, repetition_penalty=rep
    )
    history = torch.tensor([[0, 1, 1]]) if len(row) > 1 else EMPTY
    logprobs = process_logits(torch.tensor([row]), history, cfg.validate())
    probs = logprobs.exp()
    assert torch.isfinite(logprobs).any()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_low_temperature_converges_to_greedy() -> None:
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0]])
    cold = process_logits(logits, EMPTY, SamplingConfig(temperature=1e-4)).exp()
    greedy = process_logits(logits, EMPTY, SamplingConfig(temperature=0.0)).exp()
    torch.testing.assert_close(cold, greedy, atol=1e-6, rtol=0)
    assert greedy[0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_penalties_exact_maths() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[0, 1, 1, 3]])
    assert RepetitionPenalty(2.0, window=3)(logits, history).tolist() == [[2.0, -2.0, 0.5, 1.5]]
    assert FrequencyPenalty(0.5, window=4)(logits, history).tolist() == [[1.5, -2.0, 0.5, 2.5]]
    assert PresencePenalty(0.5, window=4)(logits, history).tolist() == [[1.5, -1.5, 0.5, 2.5]]


def test_no_repeat_ngram_bans_exactly_completions() -> None:
    logits = torch.zeros((1, 5))
    history = torch.tensor([[1, 2, 3, 1, 2, 4, 1]])
    # 3-grams seen starting with (1, 2): 3 and 4; the history ends with 1 -> prefix (2?) no: (x, 1)
    banned = [
        i for i in range(5) if not math.isfinite(float(NoRepeatNGram(2)(logits, history)[0, i]))
    ]
    assert banned == [2]  # after "1" we have seen "1 2" twice
    history = torch.tensor([[1, 2, 3, 1, 2, 4, 1, 2]])
    banned = [
        i for i in range(5) if not math.isfinite(float(NoRepeatNGram(3)(logits, history)[0, i]))
    ]
    assert banned == [3, 4]


def test_processor_order_is_fixed() -> None:
    cfg = SamplingConfig(
        temperature=0.7,
        top_k=5,
        top_p=0.9,
        min_p=0.05,
        typical_p=0.9,
        repetition_penalty=1.2,
        frequency_penalty=0.1,
        presence_penalty=0.1,
        no_repeat_ngram_size=3,
    )
    names = [type(p).__name__ for p in build_processors(cfg)]
    assert names == [
        "RepetitionPenalty",
        "FrequencyPenalty",
        "PresencePenalty",
        "NoRepeatNGram",
        "Temperature",
        "TopK",
        "TopP",
        "MinP",
        "TypicalP",
    ]


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("temperature", -1.0, "--temperature"),
        ("temperature", float("nan"), "--temperature"),
        ("top_p", 0.0, "--top-p"),
        ("top_p", 1.5, "--top-p"),
        ("top_k", 0, "--top-k"),
        ("min_p", -0.1, "--min-p"),
        ("min_p", 1.1, "--min-p"),
        ("typical_p", 0.0, "--typical-p"),
        ("repetition_penalty", 0.0, "--repetition-penalty"),
        ("penalty_window", 0, "--penalty-window"),
        ("no_repeat_ngram_size", -1, "--no-repeat-ngram-size"),
    ],
)
def test_config_validation_names_the_flag(field: str, value: float, flag: str) -> None:
    with pytest.raises(SamplingError, match=flag):
        SamplingConfig(**{field: value}).validate()


# ---------------------------------------------------------------- drawing
def test_select_next_inverse_cdf() -> None:
    logprobs = torch.log(torch.tensor([[0.1, 0.0, 0.6, 0.3]] * 4, dtype=torch.float64))
    u = torch.tensor([0.05, 0.10001, 0.69, 0.999999], dtype=torch.float64)
    assert select_next(logprobs, u).tolist() == [0, 2, 2, 3]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=8).filter(lambda v: sum(v) > 1e-3),
    st.floats(0, 1, exclude_max=True),
)
def test_select_next_never_picks_zero_probability(values: list[float], u: float) -> None:
    probs = torch.tensor([values], dtype=torch.float64)
    probs = probs / probs.sum()
    idx = int(select_next(torch.log(probs), torch.tensor([u], dtype=torch.float64))[0])
    assert values[idx] > 0


def test_entropy_in_nats() -> None:
    logprobs = torch.log(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(entropy(logprobs), torch.tensor([math.log(2), 0.0]))


def test_uniforms_are_per_seed_and_reproducible() -> None:
    batch = uniforms([1, 2, 3], step=7)
    alone = torch.cat([uniforms([s], step=7) for s in (1, 2, 3)])
    assert torch.equal(batch, alone)
    assert not torch.equal(uniforms([1], 7), uniforms([1], 8))
    many = uniforms(list(range(100_000)), step=0).numpy()
    assert many.min() >= 0 and many.max() < 1
    assert abs(many.mean() - 0.5) < 0.01 and abs(many.var() - 1 / 12) < 0.01
    assert uniforms([12345], 3).tolist() == GOLDEN_UNIFORM


GOLDEN_UNIFORM = [0.6522727024307261]  # splitmix64 by hand in Python ints
