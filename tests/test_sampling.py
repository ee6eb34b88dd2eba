"""Sampling rules: the seed's formula, exact maths of each processor, properties, and draws."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chargen.errors import SamplingError
from chargen.rng import uniforms
from chargen.sampling import (
    FrequencyPenalty,
    MinP,
    NoRepeatNGram,
    PresencePenalty,
    RepetitionPenalty,
    SamplingConfig,
    Temperature,
    TopK,
    TopP,
    TypicalP,
    build_processors,
    entropy,
    process_logits,
    reweight_distribution,
    select_next,
)

FAST = settings(max_examples=60, deadline=None)
NEG_INF = float("-inf")
TOL = 1e-12  # the documented "reaches p" tolerance of top-p and typical-p


def _empty(rows: int = 1) -> torch.Tensor:
    return torch.zeros((rows, 0), dtype=torch.long)


@st.composite
def logits_and_history(
    draw: st.DrawFn, max_vocab: int = 10, max_rows: int = 3, max_len: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V) float64 logits (finite, some ties likely) and (B, T) int64 history in [0, V)."""
    rows = draw(st.integers(1, max_rows))
    vocab = draw(st.integers(2, max_vocab))
    length = draw(st.integers(0, max_len))
    value = st.one_of(st.floats(-20, 20, allow_nan=False), st.sampled_from([0.0, 1.0, -1.0]))
    logits = torch.tensor(
        draw(
            st.lists(st.lists(value, min_size=vocab, max_size=vocab), min_size=rows, max_size=rows)
        ),
        dtype=torch.float64,
    )
    history = torch.tensor(
        draw(
            st.lists(
                st.lists(st.integers(0, vocab - 1), min_size=length, max_size=length),
                min_size=rows,
                max_size=rows,
            )
        ),
        dtype=torch.long,
    ).reshape(rows, length)
    return logits, history


def _kept(row: torch.Tensor) -> list[int]:
    return (row > NEG_INF).nonzero()[:, 0].tolist()


def _assert_valid(out: torch.Tensor, before: torch.Tensor) -> None:
    """A usable logits row: no NaN or +inf, at least one token kept, softmax sums to 1."""
    assert out.shape == before.shape
    assert not torch.isnan(out).any() and not (out == float("inf")).any()
    kept = out > NEG_INF
    assert kept.any(dim=-1).all()
    torch.testing.assert_close(
        torch.softmax(out, dim=-1).sum(dim=-1), torch.ones(out.shape[0], dtype=out.dtype)
    )


# =============================================================== reweight_distribution
@pytest.mark.parametrize("t", [0.2, 0.5, 1.0, 1.2, 3.0])
def test_reweight_matches_the_seed_formula(t: float) -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    expected = np.exp(np.log(p) / t) / np.sum(np.exp(np.log(p) / t))
    np.testing.assert_allclose(reweight_distribution(p, t), expected, rtol=1e-12, atol=0)


@FAST
@given(
    st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=12),
    st.floats(0.1, 10.0),
)
def test_reweight_matches_the_seed_formula_on_positive_inputs(
    values: list[float], t: float
) -> None:
    p = np.array(values)
    expected = np.exp(np.log(p) / t) / np.sum(np.exp(np.log(p) / t))
    np.testing.assert_allclose(reweight_distribution(p, t), expected, rtol=1e-12, atol=0)


@FAST
@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=12).filter(lambda v: max(v) > 0))
def test_reweight_at_t1_is_the_normalised_input(values: list[float]) -> None:
    p = np.array(values)
    np.testing.assert_allclose(reweight_distribution(p, 1.0), p / p.sum(), rtol=1e-14, atol=1e-300)


def test_reweight_at_t1_leaves_a_distribution_unchanged() -> None:
    p = np.array([0.25, 0.0, 0.125, 0.625])
    assert reweight_distribution(p, 1.0).tolist() == p.tolist()


@pytest.mark.parametrize("t", [0.0, 1e-300, 1e-13, 1e-6])
def test_reweight_near_zero_temperature_is_one_hot_on_the_argmax(t: float) -> None:
    p = np.array([[0.1, 0.0, 0.45, 0.44, 0.01], [0.3, 0.3, 0.2, 0.0, 0.2]])
    out = reweight_distribution(p, t)
    assert out[0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    if t < 1e-12:  # greedy: exact ties go to the first index
        assert out[1].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    else:  # T > 0: the formula itself splits exact ties evenly
        assert out[1].tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("t", [0.0, 1e-6, 0.2, 1.0, 1.2, 100.0])
def test_reweight_keeps_zeros_and_warns_about_nothing(t: float) -> None:
    p = np.array([0.0, 0.2, 0.0, 0.8 - 1e-300, 1e-300])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = reweight_distribution(p, t)
    assert out[0] == 0.0 and out[2] == 0.0
    assert np.all(out >= 0) and out.sum() == pytest.approx(1.0, abs=1e-15)


@FAST
@given(
    st.integers(1, 4).flatmap(
        lambda v: st.lists(
            st.lists(st.floats(0, 1), min_size=v, max_size=v).filter(lambda r: max(r) > 0),
            min_size=1,
            max_size=4,
        )
    ),
    st.one_of(st.just(0.0), st.floats(1e-3, 20)),
)
def test_reweight_rows_are_distributions(rows: list[list[float]], t: float) -> None:
    p = np.array(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = reweight_distribution(p, t)
    assert out.shape == p.shape and np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-12)
    assert np.all(out[p == 0] == 0)
    for row, expected in zip(out, p, strict=True):  # each row is reweighted on its own
        np.testing.assert_array_equal(row, reweight_distribution(expected, t))


def test_reweight_accepts_torch_tensors() -> None:
    p = torch.tensor([[0.1, 0.9], [0.5, 0.5]], dtype=torch.float32)
    out = reweight_distribution(p, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.device == p.device
    torch.testing.assert_close(out[0], torch.tensor([0.01 / 0.82, 0.81 / 0.82]))
    torch.testing.assert_close(out.sum(-1), torch.ones(2))
    np.testing.assert_allclose(
        out.numpy(), reweight_distribution(p.double().numpy(), 0.5), rtol=1e-6
    )


@pytest.mark.parametrize("t", [-0.1, float("nan"), float("inf"), "0.5"])
def test_reweight_refuses_bad_temperatures(t: float) -> None:
    with pytest.raises(SamplingError, match="--temperature"):
        reweight_distribution(np.array([0.5, 0.5]), t)


@pytest.mark.parametrize(
    "p",
    [[0.5, -0.1], [0.5, float("nan")], [0.5, float("inf")], [0.0, 0.0], [[0.5, 0.5], [0, 0]], []],
)
def test_reweight_refuses_bad_distributions(p: list) -> None:
    with pytest.raises(SamplingError):
        reweight_distribution(np.array(p, dtype=np.float64), 0.5)


# =============================================================== SamplingConfig
@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("temperature", -1.0, "--temperature"),
        ("temperature", float("nan"), "--temperature"),
        ("top_p", 0.0, "--top-p"),
        ("top_p", 1.5, "--top-p"),
        ("top_k", 0, "--top-k"),
        ("top_k", 2.5, "--top-k"),
        ("top_k", True, "--top-k"),
        ("min_p", -0.1, "--min-p"),
        ("min_p", 1.1, "--min-p"),
        ("typical_p", 0.0, "--typical-p"),
        ("repetition_penalty", 0.0, "--repetition-penalty"),
        ("frequency_penalty", float("nan"), "--frequency-penalty"),
        ("presence_penalty", float("inf"), "--presence-penalty"),
        ("penalty_window", 0, "--penalty-window"),
        ("no_repeat_ngram_size", -1, "--no-repeat-ngram"),
        # values that would overflow float32 logits into inf / NaN (the hostile-input round)
        ("repetition_penalty", 1e-300, "--repetition-penalty"),
        ("repetition_penalty", 1e300, "--repetition-penalty"),
        ("frequency_penalty", 1e300, "--frequency-penalty"),
        ("presence_penalty", 1e308, "--presence-penalty"),
        ("presence_penalty", -101.0, "--presence-penalty"),
        ("penalty_window", 10**9, "--penalty-window"),
        ("no_repeat_ngram_size", 1000, "--no-repeat-ngram"),
        ("top_k", 10**12, "--top-k"),
    ],
)
def test_config_validation_names_the_flag(field: str, value: object, flag: str) -> None:
    with pytest.raises(SamplingError, match=flag) as info:
        SamplingConfig(**{field: value}).validate()
    assert "\n" not in str(info.value) and repr(value) in str(info.value)


def test_config_edges_are_valid_and_round_trip_through_json() -> None:
    cfg = SamplingConfig(
        temperature=0.0,
        top_k=1,
        top_p=1.0,
        min_p=0.0,
        typical_p=1.0,
        repetition_penalty=0.01,
        frequency_penalty=-0.5,
        presence_penalty=0.5,
        penalty_window=1,
        no_repeat_ngram_size=0,
    )
    assert cfg.validate() is cfg
    again = SamplingConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert SamplingConfig.from_dict({}) == SamplingConfig()
    assert SamplingConfig.from_dict({"top_p": 0.9}).top_p == 0.9


def test_config_from_dict_refuses_unknown_and_bad_values() -> None:
    with pytest.raises(SamplingError, match="top_q"):
        SamplingConfig.from_dict({"top_q": 0.9})
    with pytest.raises(SamplingError, match="--top-p"):
        SamplingConfig.from_dict({"top_p": 2.0})


# =============================================================== the chain
def test_processor_order_is_fixed_and_only_active_rules_run() -> None:
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
    assert build_processors(SamplingConfig()) == []
    assert build_processors(SamplingConfig(top_p=1.0, typical_p=1.0, min_p=0.0)) == []
    greedy = build_processors(SamplingConfig(temperature=0.0, top_k=3, repetition_penalty=1.5))
    assert [type(p).__name__ for p in greedy] == ["RepetitionPenalty"]
    with pytest.raises(SamplingError, match="--top-k"):
        build_processors(SamplingConfig(top_k=0))


@st.composite
def configs(draw: st.DrawFn) -> SamplingConfig:
    maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
    return SamplingConfig(
        temperature=draw(st.one_of(st.just(0.0), st.floats(1e-4, 5.0))),
        top_k=draw(maybe(st.integers(1, 12))),
        top_p=draw(maybe(st.floats(1e-3, 1.0))),
        min_p=draw(maybe(st.floats(0.0, 1.0))),
        typical_p=draw(maybe(st.floats(1e-3, 1.0))),
        repetition_penalty=draw(st.floats(0.25, 4.0)),
        frequency_penalty=draw(st.floats(-2.0, 2.0)),
        presence_penalty=draw(st.floats(-2.0, 2.0)),
        penalty_window=draw(st.integers(1, 16)),
        no_repeat_ngram_size=draw(st.integers(0, 4)),
    ).validate()


@settings(max_examples=100, deadline=None)
@given(logits_and_history(), configs())
def test_the_chain_always_gives_a_distribution(
    data: tuple[torch.Tensor, torch.Tensor], cfg: SamplingConfig
) -> None:
    logits, history = data
    logprobs = process_logits(logits.float(), history, cfg)
    assert logprobs.shape == logits.shape and not torch.isnan(logprobs).any()
    assert (logprobs > NEG_INF).any(dim=-1).all()
    torch.testing.assert_close(logprobs.exp().sum(-1), torch.ones(logits.shape[0]))
    # rows are independent: the batch equals each row alone
    for b in range(logits.shape[0]):
        alone = process_logits(logits[b : b + 1].float(), history[b : b + 1], cfg)
        torch.testing.assert_close(logprobs[b : b + 1], alone)


@FAST
@given(logits_and_history(), configs())
def test_greedy_is_a_one_hot_on_the_argmax_of_the_penalised_logits(
    data: tuple[torch.Tensor, torch.Tensor], cfg: SamplingConfig
) -> None:
    logits, history = data
    cfg.temperature = 0.0
    penalised = logits
    for proc in build_processors(cfg):
        penalised = proc(penalised, history)
    out = process_logits(logits, history, cfg)
    for b in range(logits.shape[0]):
        best = int(penalised[b].argmax())  # first index on ties
        assert _kept(out[b]) == [best] and float(out[b, best]) == 0.0


@FAST
@given(
    st.lists(st.floats(-5, 5), min_size=2, max_size=8, unique=True),
    st.sampled_from([1e-4, 1e-6, 1e-9]),
    configs(),
)
def test_low_temperature_converges_to_greedy(
    row: list[float], t: float, cfg: SamplingConfig
) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    top2 = sorted(row)[-2:]
    assume(top2[1] - top2[0] > 1e-2)  # a clear argmax: exp(-gap / T) underflows
    cfg.repetition_penalty, cfg.frequency_penalty, cfg.presence_penalty = 1.0, 0.0, 0.0
    cfg.no_repeat_ngram_size = 0
    cfg.temperature = t
    cold = process_logits(logits, _empty(), cfg).exp()
    cfg.temperature = 0.0
    greedy = process_logits(logits, _empty(), cfg).exp()
    torch.testing.assert_close(cold, greedy, atol=1e-12, rtol=0)


def test_greedy_agrees_with_the_cold_limit_even_when_typical_p_drops_the_mode() -> None:
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.3]], dtype=torch.float64))
    # at T = 1 the mode is the least typical token: typical-p 0.5 keeps the two 0.3 tokens
    assert _kept(TypicalP(0.5)(logits, _empty())[0]) == [1, 2]
    cold = process_logits(logits, _empty(), SamplingConfig(temperature=1e-3, typical_p=0.5))
    greedy = process_logits(logits, _empty(), SamplingConfig(temperature=0.0, typical_p=0.5))
    assert _kept(greedy[0]) == [0]
    torch.testing.assert_close(cold.exp(), greedy.exp(), atol=1e-12, rtol=0)


# =============================================================== each processor
PROCESSORS: dict[str, Callable[[st.DrawFn], Callable]] = {
    "repetition": lambda d: RepetitionPenalty(d(st.floats(0.1, 10)), d(st.integers(1, 16))),
    "frequency": lambda d: FrequencyPenalty(d(st.floats(-3, 3)), d(st.integers(1, 16))),
    "presence": lambda d: PresencePenalty(d(st.floats(-3, 3)), d(st.integers(1, 16))),
    "ngram": lambda d: NoRepeatNGram(d(st.integers(1, 4))),
    "temperature": lambda d: Temperature(d(st.floats(1e-6, 100))),
    "top_k": lambda d: TopK(d(st.integers(1, 12))),
    "top_p": lambda d: TopP(d(st.floats(1e-6, 1.0))),
    "min_p": lambda d: MinP(d(st.floats(0.0, 1.0))),
    "typical_p": lambda d: TypicalP(d(st.floats(1e-6, 1.0))),
}
TRUNCATIONS = {"top_k", "top_p", "min_p", "typical_p", "ngram"}


@pytest.mark.parametrize("name", sorted(PROCESSORS))
@FAST
@given(data=st.data())
def test_every_processor_gives_a_valid_distribution(name: str, data: st.DataObject) -> None:
    logits, history = data.draw(logits_and_history())
    proc = PROCESSORS[name](data.draw)
    out = proc(logits, history)
    _assert_valid(out, logits)
    assert out.dtype == logits.dtype
    if name in TRUNCATIONS:  # removing tokens never touches the kept ones
        kept = out > NEG_INF
        assert torch.equal(out[kept], logits[kept])
    for b in range(logits.shape[0]):  # rows are independent
        assert torch.equal(proc(logits[b : b + 1], history[b : b + 1]), out[b : b + 1])


@FAST
@given(st.lists(st.floats(-20, 20), min_size=1, max_size=12, unique=True), st.integers(1, 15))
def test_top_k_keeps_exactly_the_k_largest(row: list[float], k: int) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    kept = _kept(TopK(k)(logits, _empty())[0])
    assert sorted(kept) == sorted(sorted(range(len(row)), key=lambda i: -row[i])[:k])


@FAST
@given(st.lists(st.sampled_from([-1.0, 0.0, 2.0]), min_size=1, max_size=12), st.integers(1, 15))
def test_top_k_ties_keep_exactly_k_lowest_ids_first(row: list[float], k: int) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    kept = _kept(TopK(k)(logits, _empty())[0])
    assert len(kept) == min(k, len(row))
    assert sorted(kept) == sorted(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])


def test_top_k_ties_by_hand() -> None:
    assert _kept(TopK(2)(torch.tensor([[1.0, 3.0, 3.0, 3.0]]), _empty())[0]) == [1, 2]
    assert _kept(TopK(3)(torch.tensor([[5.0, 3.0, 3.0, 3.0]]), _empty())[0]) == [0, 1, 2]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-8, 8), min_size=1, max_size=7), st.floats(1e-6, 1.0))
def test_top_p_keeps_a_smallest_set_reaching_p_by_brute_force(row: list[float], p: float) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    probs = torch.softmax(logits, -1)[0].tolist()
    vocab = range(len(row))
    subsets = [s for n in range(1, len(row) + 1) for s in itertools.combinations(vocab, n)]
    masses = {s: math.fsum(probs[i] for i in s) for s in subsets}
    assume(all(abs(m - (p - TOL)) > 1e-14 for m in masses.values()))  # no rounding coin-flips
    smallest = min(len(s) for s, m in masses.items() if m >= p - TOL)
    kept = tuple(_kept(TopP(p)(logits, _empty())[0]))
    assert len(kept) == smallest  # no smaller set reaches p ...
    assert masses[kept] >= p - TOL  # ... this one does ...
    best_of_size = max(m for s, m in masses.items() if len(s) == smallest)
    assert masses[kept] == pytest.approx(best_of_size, abs=1e-12)  # ... and it is the likeliest


def test_top_p_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.15, 0.25]], dtype=torch.float64))
    assert _kept(TopP(0.5)(logits, _empty())[0]) == [1]
    assert _kept(TopP(0.6)(logits, _empty())[0]) == [1, 3]
    assert _kept(TopP(0.75)(logits, _empty())[0]) == [1, 3]  # 0.5 + 0.25 reaches 0.75
    assert _kept(TopP(0.76)(logits, _empty())[0]) == [1, 2, 3]
    assert _kept(TopP(1.0)(logits, _empty())[0]) == [0, 1, 2, 3]


@settings(max_examples=100, deadline=None)
@given(logits_and_history(), st.floats(0.0, 1.0))
def test_min_p_keeps_exactly_the_tokens_at_or_above_the_threshold(
    data: tuple[torch.Tensor, torch.Tensor], min_p: float
) -> None:
    logits, history = data
    out = MinP(min_p)(logits, history)
    for b, row in enumerate(logits.tolist()):
        top = max(row)
        weights = [math.exp(v - top) for v in row]
        probs = [w / math.fsum(weights) for w in weights]
        threshold = min_p * max(probs)
        assume(all(abs(q - threshold) > 1e-12 for q in probs) or min_p in (0.0, 1.0))
        assert _kept(out[b]) == [i for i, q in enumerate(probs) if q >= threshold]


def test_min_p_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    assert _kept(MinP(0.3)(logits, _empty())[0]) == [0, 1, 2]  # threshold 0.15: kept
    assert _kept(MinP(0.31)(logits, _empty())[0]) == [0, 1]
    assert _kept(MinP(1.0)(logits, _empty())[0]) == [0]


def _typical_reference(row: list[float], mass: float) -> list[int]:
    """Meister et al.: rank by |surprisal - entropy| (ties: lower id), keep until mass >= p."""
    top = max(row)
    weights = [math.exp(v - top) for v in row]
    total = math.fsum(weights)
    probs = [w / total for w in weights]
    logp = [math.log(q) if q > 0 else NEG_INF for q in probs]
    h = -math.fsum(q * lp for q, lp in zip(probs, logp, strict=True) if q > 0)
    order = sorted(range(len(row)), key=lambda i: (abs(-logp[i] - h), i))
    kept, acc = [], 0.0
    for i in order:
        kept.append(i)
        acc += probs[i]
        if acc >= mass - TOL:
            break
    return sorted(kept)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-8, 8), min_size=2, max_size=10), st.floats(1e-6, 0.999))
def test_typical_p_keeps_the_most_typical_tokens_until_mass_p(row: list[float], p: float) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)[0]
    h = float(-(logp.exp() * logp).sum())
    shifts = (-logp - h).abs()
    assume(float(shifts.sort().values[:2].diff().abs().min()) > 1e-9 or len(set(row)) == 1)
    kept = _kept(TypicalP(p)(logits, _empty())[0])
    assert int(shifts.argmin()) in kept  # the token closest to the entropy is always kept
    probs = logp.exp()
    assert float(probs[kept].sum()) >= p - 1e-9  # the kept mass reaches p
    reference = _typical_reference(row, p)
    cum = sorted(math.fsum(float(probs[i]) for i in reference[:n]) for n in range(len(reference)))
    assume(all(abs(c - (p - TOL)) > 1e-12 for c in cum))
    assert kept == reference


@FAST
@given(st.lists(st.floats(-20, 20), min_size=2, max_size=10), st.floats(1e-2, 50))
def test_temperature_is_softmax_of_logits_over_t(row: list[float], t: float) -> None:
    logits = torch.tensor([row], dtype=torch.float64)
    out = Temperature(t)(logits, _empty())
    torch.testing.assert_close(torch.softmax(out, -1), torch.softmax(logits / t, -1))


# ---------------------------------------------------------------- penalties: exact maths
def _window_counts(row: list[int], window: int, vocab: int) -> list[int]:
    recent = row[-window:] if row else []
    return [recent.count(v) for v in range(vocab)]


@settings(max_examples=100, deadline=None)
@given(logits_and_history(max_len=20), st.floats(0.1, 10), st.floats(-3, 3), st.integers(1, 25))
def test_penalties_change_only_tokens_in_the_window_by_the_formula(
    data: tuple[torch.Tensor, torch.Tensor], r: float, f: float, window: int
) -> None:
    logits, history = data
    vocab = logits.shape[1]
    rep = RepetitionPenalty(r, window)(logits, history).tolist()
    freq = FrequencyPenalty(f, window)(logits, history).tolist()
    pres = PresencePenalty(f, window)(logits, history).tolist()
    for b, row in enumerate(logits.tolist()):
        counts = _window_counts(history[b].tolist(), window, vocab)
        for v, logit in enumerate(row):
            if counts[v] == 0:  # outside the window: untouched, bit for bit
                assert rep[b][v] == freq[b][v] == pres[b][v] == logit
                continue
            assert rep[b][v] == (logit / r if logit > 0 else logit * r)
            assert freq[b][v] == logit - f * counts[v]
            assert pres[b][v] == logit - f


def test_penalties_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[0, 1, 1, 3]])
    assert RepetitionPenalty(2.0, window=3)(logits, history).tolist() == [[2.0, -2.0, 0.5, 1.5]]
    assert FrequencyPenalty(0.5, window=4)(logits, history).tolist() == [[1.5, -2.0, 0.5, 2.5]]
    assert PresencePenalty(0.5, window=4)(logits, history).tolist() == [[1.5, -1.5, 0.5, 2.5]]
    assert torch.equal(FrequencyPenalty(0.5)(logits, _empty()), logits)


def _banned_by_brute_force(row: list[int], n: int) -> set[int]:
    if len(row) < n:
        return set()
    tail = tuple(row[len(row) - n + 1 :]) if n > 1 else ()
    return {row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i : i + n - 1]) == tail}


@settings(max_examples=150, deadline=None)
@given(logits_and_history(max_vocab=5, max_len=16), st.integers(1, 4))
def test_no_repeat_ngram_bans_exactly_the_completions_of_seen_ngrams(
    data: tuple[torch.Tensor, torch.Tensor], n: int
) -> None:
    logits, history = data
    out = NoRepeatNGram(n)(logits, history)
    for b in range(logits.shape[0]):
        banned = _banned_by_brute_force(history[b].tolist(), n)
        if len(banned) == logits.shape[1]:  # everything banned: the argmax survives
            assert _kept(out[b]) == [int(logits[b].argmax())]
        else:
            assert set(range(logits.shape[1])) - set(_kept(out[b])) == banned


def test_no_repeat_ngram_by_hand() -> None:
    logits = torch.zeros((1, 5))
    history = torch.tensor([[1, 2, 3, 1, 2, 4, 1]])
    assert _kept(NoRepeatNGram(2)(logits, history)[0]) == [0, 1, 3, 4]  # "1 2" was seen
    history = torch.tensor([[1, 2, 3, 1, 2, 4, 1, 2]])
    assert _kept(NoRepeatNGram(3)(logits, history)[0]) == [0, 1, 2]  # "1 2 3", "1 2 4"
    assert _kept(NoRepeatNGram(1)(logits, history)[0]) == [0]
    assert torch.equal(NoRepeatNGram(3)(logits, history[:, :2]), logits)


# =============================================================== drawing
def test_select_next_inverse_cdf_by_hand() -> None:
    logprobs = torch.log(torch.tensor([[0.1, 0.0, 0.6, 0.3]] * 6, dtype=torch.float64))
    # cdf = [0.1, 0.1, 0.7, 1.0]: the first index whose cdf exceeds u
    u = torch.tensor([0.0, 0.05, 0.1000001, 0.69, 0.7, 1 - 2**-53], dtype=torch.float64)
    assert select_next(logprobs, u).tolist() == [0, 0, 2, 2, 3, 3]
    assert select_next(logprobs, u).dtype == torch.int64


def _inverse_cdf_reference(probs: list[float], u: float) -> int:
    """First i with c_i > u * c_last, summing left to right in float64 as the cdf does."""
    cdf = list(itertools.accumulate(probs))
    for i, c in enumerate(cdf):
        if c > u * cdf[-1]:
            return i
    return max(i for i, q in enumerate(probs) if q > 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.just(0.0), st.floats(1e-300, 1.0), st.floats(0, 1)),
        min_size=1,
        max_size=8,
    ).filter(lambda v: max(v) > 0),
    st.one_of(st.floats(0, 1, exclude_max=True), st.sampled_from([0.0, 1 - 2**-53])),
)
def test_select_next_follows_the_cdf_and_never_picks_a_zero(values: list[float], u: float) -> None:
    probs = torch.tensor([values], dtype=torch.float64)
    probs = probs / probs.sum()
    with np.errstate(divide="ignore"):
        logprobs = torch.log(probs)
    idx = int(select_next(logprobs, torch.tensor([u], dtype=torch.float64))[0])
    assert float(probs[0, idx]) > 0
    assert idx == _inverse_cdf_reference(probs[0].tolist(), u)


def test_select_next_draws_with_the_right_frequencies_and_per_row() -> None:
    p = torch.tensor([0.1, 0.2, 0.0, 0.3, 0.4], dtype=torch.float64)
    n = 40_000
    draws = select_next(torch.log(p).expand(n, -1), uniforms(list(range(n)), step=5))
    freq = torch.bincount(draws, minlength=5).double() / n
    assert freq[2] == 0
    torch.testing.assert_close(freq, p, atol=0.01, rtol=0)
    # a batch draw equals each row drawn alone
    alone = [int(select_next(torch.log(p)[None], uniforms([s], 5))[0]) for s in range(50)]
    assert draws[:50].tolist() == alone


def test_select_next_refuses_a_row_without_mass() -> None:
    with pytest.raises(ValueError):
        select_next(torch.full((1, 3), NEG_INF), torch.tensor([0.5]))


def test_entropy_in_nats() -> None:
    out = entropy(torch.log(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])))
    torch.testing.assert_close(out, torch.tensor([math.log(2), 0.0]))
    assert float(entropy(torch.log(torch.full((1, 4), 0.25)))[0]) == pytest.approx(math.log(4))


@FAST
@given(logits_and_history(), configs())
def test_entropy_of_the_sampled_distribution_is_bounded(
    data: tuple[torch.Tensor, torch.Tensor], cfg: SamplingConfig
) -> None:
    logits, history = data
    logprobs = process_logits(logits, history, cfg)
    h = entropy(logprobs)
    kept = (logprobs > NEG_INF).sum(-1).double()
    assert torch.all(h >= -1e-12) and torch.all(h <= torch.log(kept) + 1e-9)
    p = logprobs.exp().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    np.testing.assert_allclose(h.numpy(), expected, atol=1e-9)
