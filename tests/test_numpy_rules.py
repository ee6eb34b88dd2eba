"""Every sampling rule on NumPy arrays (``numpy_rules``, each rule's ``numpy``) against the
torch rule: the same logits after every rule, the same draws from the same logits over many
seeds, the same tokens from the NumPy engine and the torch engine (with the same model logits:
bit for bit; with each engine's own step: token for token), and the NumPy engine never calls a
torch processor when every rule has a NumPy version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargen import constraints, numpy_rules, samplers, sampling
from chargen.chain import SamplingChain
from chargen.checkpoint import load_run
from chargen.errors import GenerationError
from chargen.generate import generate, token_strings
from chargen.numpy_draw import draw
from chargen.rng import UniformDraws, uniforms
from chargen.samplers import DRY, DynamicTemperature, _Breakers
from chargen.sampling import NEG_INF, SamplingConfig, TopK, TopP, entropy, select_next

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VOCAB = list("abcdefgh :\n.")  # a character vocabulary: breakers, a regex, bans all apply
V = len(VOCAB)

CONFIGS = {  # one per rule, then chains of them
    "temperature": SamplingConfig(temperature=0.7),
    "greedy": SamplingConfig(temperature=0.0),
    "repetition": SamplingConfig(repetition_penalty=1.4, penalty_window=6),
    "frequency": SamplingConfig(frequency_penalty=0.4),
    "presence": SamplingConfig(presence_penalty=0.7, penalty_window=4),
    "no-repeat-ngram": SamplingConfig(no_repeat_ngram_size=2),
    "top-k": SamplingConfig(top_k=4),
    "top-p": SamplingConfig(top_p=0.8),
    "min-p": SamplingConfig(min_p=0.15),
    "typical-p": SamplingConfig(typical_p=0.6),
    "dry": SamplingConfig(dry_multiplier=0.8, dry_allowed_length=1),
    "dry-window": SamplingConfig(
        dry_multiplier=2.0, dry_base=1.3, dry_penalty_last_n=9, dry_sequence_breakers=["ab", ":"]
    ),
    "dynatemp": SamplingConfig(temperature=0.9, dynatemp_range=0.6, dynatemp_exponent=1.5),
    "top-n-sigma": SamplingConfig(temperature=1.5, top_n_sigma=1.0),
    "xtc": SamplingConfig(xtc_probability=0.5, xtc_threshold=0.1),
    "mirostat": SamplingConfig(mirostat_tau=2.0, mirostat_eta=0.3),
    "regex": SamplingConfig(regex="[a-h ]{2,30}\\."),
    "ban-chars": SamplingConfig(ban_chars="ae"),
    "ban-strings": SamplingConfig(ban_strings=["ab", "c d", "hh"]),
    "logit-bias": SamplingConfig(logit_bias=["a=2.5", ".=-3"]),
    "greedy-rules": SamplingConfig(
        temperature=0.0, repetition_penalty=1.3, dry_multiplier=0.5, ban_chars="b"
    ),
    "full chain": SamplingConfig(  # the benchmark's: penalties, DRY, top-p, regex
        repetition_penalty=1.2, dry_multiplier=0.8, top_p=0.9, regex="[^\\n]*"
    ),
    "everything": SamplingConfig(
        temperature=1.2,
        repetition_penalty=1.1,
        frequency_penalty=0.1,
        presence_penalty=0.1,
        no_repeat_ngram_size=4,
        top_k=9,
        top_p=0.95,
        min_p=0.02,
        typical_p=0.97,
        dry_multiplier=0.5,
        dynatemp_range=0.3,
        top_n_sigma=2.0,
        xtc_probability=0.3,
        ban_strings=["dd"],
        logit_bias=["h=1"],
    ),
}


# --------------------------------------------------------------------------- strategies
@st.composite
def logits_and_history(draw_: st.DrawFn, dtype: type = np.float32) -> tuple[np.ndarray, ...]:
    """(B, V) logits (ties and tiny values likely, some ``-inf`` but never a whole row) and a
    (B, T) history over ``VOCAB``."""
    rows = draw_(st.integers(1, 3))
    value = st.one_of(
        st.floats(-20, 20, allow_nan=False, width=32),
        st.sampled_from([0.0, 1.0, -1.0, 2.5, 1e-30]),
    )
    logits = np.array(
        draw_(st.lists(st.lists(value, min_size=V, max_size=V), min_size=rows, max_size=rows)),
        dtype=dtype,
    )
    removed = np.array(
        draw_(st.lists(st.lists(st.booleans(), min_size=V, max_size=V), min_size=rows,
                       max_size=rows))
    )  # fmt: skip
    removed[:, 0] &= ~removed.all(axis=1)  # a live token in each row
    removed &= draw_(st.booleans())  # often none at all
    logits[removed] = NEG_INF
    length = draw_(st.integers(0, 30))
    tokens = st.integers(0, V - 1)
    history = draw_(
        st.lists(st.lists(tokens, min_size=length, max_size=length), min_size=rows, max_size=rows)
    )
    return logits, np.array(history, dtype=np.int64).reshape(rows, length)


def _rule_outputs(rule: sampling.LogitsProcessor, x: np.ndarray, history: np.ndarray) -> tuple:
    """(NumPy output, torch output as an array), or (None, None) when both refuse the row."""
    before = x.copy()
    try:
        want = rule(torch.from_numpy(x.copy()), torch.from_numpy(history)).numpy()
    except GenerationError as exc:
        with pytest.raises(GenerationError, match=str(exc).split(" leaves")[0]):
            rule.numpy(x, history)
        return None, None
    got = rule.numpy(x, history)
    np.testing.assert_array_equal(x, before)  # the input is left as it was
    assert got.dtype == x.dtype and got.shape == x.shape
    return got, want


# --------------------------------------------------------------------------- rule by rule
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
@given(data=st.data())
@FAST
def test_every_rule_gives_the_torch_rules_logits(name: str, dtype: type, data) -> None:
    logits, history = data.draw(logits_and_history(dtype))
    chain = SamplingChain(CONFIGS[name], vocab=VOCAB)
    assert chain.numpy_ok
    chain.reset(list(range(len(logits))))
    # float64 logits scaled by dynamic temperature (a float64 made with exp and log) may differ
    # in the last bit; in float32, the engine's dtype, the rounding hides that
    approximate = dtype is np.float64 and any(type(r) is DynamicTemperature for r in chain.rules)
    x = logits
    for rule in chain.rules:  # each rule gets the same input on both sides
        assert rule.has_numpy
        got, want = _rule_outputs(rule, x, history)
        if got is None:
            return
        _assert_same(got, want, approximate and type(rule) is DynamicTemperature)
        x = got
    t_logits, t_history = torch.from_numpy(logits), torch.from_numpy(history)
    got = chain.numpy_logprobs(logits, history)
    _assert_same(got, chain.logprobs(t_logits, t_history).numpy(), approximate)


def _assert_same(got: np.ndarray, want: np.ndarray, approximate: bool = False) -> None:
    """Bit for bit, or the same removed tokens and values to 1e-13 when ``approximate``."""
    if approximate:
        np.testing.assert_array_equal(got == NEG_INF, want == NEG_INF)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    else:
        np.testing.assert_array_equal(got, want)


@given(data=st.data(), k=st.integers(1, V + 2))
@FAST
def test_top_k_by_partition_keeps_the_k_largest_lowest_ids_first(data, k: int) -> None:
    logits, _ = data.draw(logits_and_history())
    logits = np.round(logits)  # many ties around the k-th value
    got = numpy_rules.top_k(logits, k)
    np.testing.assert_array_equal(got, TopK(k)(torch.from_numpy(logits), None).numpy())
    assert ((got > NEG_INF).sum(axis=1) == np.minimum(k, (logits > NEG_INF).sum(axis=1))).all()


@given(
    flat=st.floats(0.0, 3.0),
    ties=st.integers(1, 50),
    p=st.floats(0.01, 0.999),
    seed=st.integers(0, 2**16),
)
@FAST
def test_top_p_on_a_large_vocabulary_ranks_only_what_it_needs(flat, ties, p, seed) -> None:
    """Above ``PARTIAL_ABOVE`` tokens top-p sorts the largest probabilities only, widening the
    set while it lacks the nucleus: the kept tokens are still the torch rule's, ties included."""
    rng = np.random.default_rng(seed)
    vocab = numpy_rules.PARTIAL_ABOVE * 4
    logits = (rng.standard_normal((2, vocab)) * flat).astype(np.float32)
    logits[:, rng.integers(0, vocab, ties)] = logits[0, 0]  # a run of equal probabilities
    logits = np.round(logits, 1)  # more ties
    got = numpy_rules.top_p(logits, p)
    np.testing.assert_array_equal(got, TopP(p)(torch.from_numpy(logits), None).numpy())


# --------------------------------------------------------------------------- DRY
@given(
    seed=st.integers(0, 2**16),
    length=st.integers(0, 300),
    period=st.integers(1, 6),
    allowed=st.integers(1, 4),
    last_n=st.sampled_from([-1, 5, 40, 1000]),
    base=st.sampled_from([1.0, 1.000001, 1.3, 1.75, 40.0]),
    breakers=st.lists(st.sampled_from(["a", ":", "ab", "bca", "\n"]), unique=True, max_size=3),
)
@FAST
def test_dry_follows_only_the_matching_positions_and_agrees(
    seed, length, period, allowed, last_n, base, breakers
) -> None:
    """Long, periodic histories (repeats far past the allowed length, the exponent cap)."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(0, V, period)
    history = np.tile(pattern, (2, length // period + 1))[:, :length].copy()
    if length:
        history[1, rng.integers(0, length, 3)] = rng.integers(0, V, 3)  # broken repeats
    rule = DRY(0.8, base, allowed, last_n, tuple(breakers))
    rule.use_vocabulary(VOCAB)
    logits = (rng.standard_normal((2, V)) * 3).astype(np.float32)
    got, want = _rule_outputs(rule, logits, history)
    np.testing.assert_array_equal(got, want)


@given(
    seed=st.integers(0, 2**16),
    length=st.integers(1, 200),
    most=st.integers(0, 50),
    breakers=st.lists(st.sampled_from(["a", ":", "ab", "bca", "h\n."]), unique=True, max_size=3),
)
@FAST
def test_breaker_limits_read_only_the_tail_that_can_matter(seed, length, most, breakers) -> None:
    rng = np.random.default_rng(seed)
    window = rng.integers(0, V, (3, length))
    window[:, : length // 2] = rng.integers(0, 3, (3, length // 2))  # breakers early on
    found = _Breakers.resolve(breakers, VOCAB)
    everything = found.limits(window)
    capped = found.limits(window, most)
    assert everything.tolist() == [_limit_by_hand(row, found) for row in window.tolist()]
    expected = np.minimum(everything, most) if most else everything
    np.testing.assert_array_equal(capped, expected)
    np.testing.assert_array_equal(found.limits(torch.from_numpy(window), most), capped)


def _limit_by_hand(row: list[int], found: _Breakers) -> int:
    """The tokens after the most recent breaker occurrence (the longest at one head)."""
    sequences = [(t, ()) for t in found.single_set] + found.sequences
    for back in range(len(row)):
        head = len(row) - 1 - back
        fits = [len(tail) for first, tail in sequences
                if row[head] == first and list(tail) == row[head + 1 : head + 1 + len(tail)]]  # fmt: skip
        if fits:
            return back - max(fits)
    return len(row)


# --------------------------------------------------------------------------- the draw
@given(data=st.data(), u=st.lists(st.floats(0.0, 1.0 - 2**-53), min_size=3, max_size=3))
@FAST
def test_draw_is_select_next(data, u: list[float]) -> None:
    logits, _ = data.draw(logits_and_history())
    lp = torch.log_softmax(torch.from_numpy(logits), dim=-1)
    for rows in (slice(0, 1), slice(0, None)):  # the one-row code and the batched code
        uniform = np.array(u[: len(logits)])[rows]
        ids, logp, ent = draw(lp[rows].numpy(), uniform)
        want = select_next(lp[rows], torch.from_numpy(uniform))
        np.testing.assert_array_equal(ids, want.numpy())
        np.testing.assert_array_equal(logp, lp[rows].gather(1, want[:, None])[:, 0].numpy())
        np.testing.assert_allclose(ent, entropy(lp[rows]).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_numpy_draw_is_the_torch_draw_over_many_seeds(name: str, rows: int) -> None:
    """Step by step from the same logits, each side with its own chain (state included):
    the same token, the same log p bit for bit, the same entropy."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(len(name) * 7 + rows)
    for first in range(0, 40, 4 if rows == 1 else 12):
        seeds = list(range(first, first + rows))
        mine, theirs = (SamplingChain(cfg, vocab=VOCAB) for _ in range(2))
        mine.reset(seeds)
        theirs.reset(seeds)
        history = rng.integers(0, V, (rows, 5))
        draws = UniformDraws(seeds)
        for step in range(40):
            scale = rng.choice([0.5, 3.0, 8.0])
            logits = (rng.standard_normal((rows, V)) * scale).astype(np.float32)
            ids, logp, ent = mine.draw_arrays(logits, history, draws(step), step)
            want = theirs.draw(
                torch.from_numpy(logits), torch.from_numpy(history), uniforms(seeds, step), step
            )
            assert ids.tolist() == want[0].tolist(), (name, seeds, step)
            np.testing.assert_array_equal(logp, want[1].numpy())
            np.testing.assert_allclose(ent, want[2].numpy(), rtol=1e-5, atol=1e-5)
            history = np.concatenate([history, ids[:, None]], axis=1)


# --------------------------------------------------------------------------- the engines
def _engine_configs(tokenizer) -> dict[str, SamplingConfig]:
    """``CONFIGS`` for a model whose vocabulary is the trained run's (lower case, ' ', '.')."""
    out = dict(CONFIGS)
    out["regex"] = SamplingConfig(regex="[a-z ]{2,40}\\.", temperature=0.8)
    assert set("ab .") <= set(tokenizer.vocab)
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_both_engines_draw_the_same(trained_run: Path, name: str) -> None:
    """The NumPy and torch engines share the loop and the draw (``token_loop``,
    ``SamplingChain.draw_arrays``); they differ only in the model step, whose float32 rounding
    differs in the last bits: the same tokens, log-probabilities to that rounding."""
    _, tokenizer, model = load_run(trained_run)
    cfg = _engine_configs(tokenizer)[name]
    for seed in (0, 11):
        common = {"length": 70, "num_samples": 3, "seed": seed, "sampling": cfg, "stop": ["zz"]}
        numpy_rows = generate(model, tokenizer, "the ", engine="numpy", **common)
        torch_rows = generate(model, tokenizer, "the ", engine="torch", **common)
        for a, b in zip(numpy_rows, torch_rows, strict=True):
            assert (a.tokens, a.text, a.stop_reason) == (b.tokens, b.text, b.stop_reason), seed
            np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(a.entropies, b.entropies, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_both_engines_draw_the_same_tokens_each_with_its_own_step(
    trained_run: Path, name: str
) -> None:
    _, tokenizer, model = load_run(trained_run)
    cfg = _engine_configs(tokenizer)[name]
    # the two steps round float32 differently: a draw within that rounding of a boundary could
    # flip a token (as for temperature alone); these seeds have none
    common = {"length": 60, "num_samples": 3, "seed": 3, "sampling": cfg}
    numpy_rows = generate(model, tokenizer, "a dog ", engine="numpy", **common)
    torch_rows = generate(model, tokenizer, "a dog ", engine="torch", **common)
    assert [s.tokens for s in numpy_rows] == [s.tokens for s in torch_rows]
    for a, b in zip(numpy_rows, torch_rows, strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_the_numpy_engine_calls_no_torch_processor(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tokenizer, model = load_run(trained_run)
    rule_classes = {
        type(rule)
        for cfg in _engine_configs(tokenizer).values()
        for rule in SamplingChain(cfg, vocab=token_strings(tokenizer)).rules
    }
    every_rule = {
        value
        for module in (sampling, samplers, constraints)
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, sampling.Rule) and name[0] != "_"
    } - {sampling.Rule}
    assert rule_classes == every_rule  # CONFIGS try every rule

    def refuse(self, logits, history):
        raise AssertionError(f"{type(self).__name__} ran its torch version")

    for rule_class in rule_classes:
        monkeypatch.setattr(rule_class, "__call__", refuse)
    for cfg in _engine_configs(tokenizer).values():
        assert generate(model, tokenizer, "the ", length=30, sampling=cfg, engine="numpy")


def test_a_rule_without_numpy_sends_the_chain_to_the_torch_processors(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Halve(sampling.Rule):  # a new rule, no NumPy version yet
        stage = sampling.TRUNCATION

        def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
            return logits / 2

    real = samplers.rules
    monkeypatch.setattr(samplers, "rules", lambda cfg, vocab=None: [*real(cfg, vocab), Halve()])
    _, tokenizer, model = load_run(trained_run)
    cfg = CONFIGS["full chain"]
    assert not SamplingChain(cfg, vocab=token_strings(tokenizer)).numpy_ok
    common = {"length": 50, "num_samples": 2, "seed": 4, "sampling": cfg}
    fast = generate(model, tokenizer, "the ", engine="numpy", **common)
    plain = generate(model, tokenizer, "the ", engine="torch", **common)
    assert [s.tokens for s in fast] == [s.tokens for s in plain]


def test_the_numpy_regex_refuses_a_row_with_no_allowed_token() -> None:
    chain = SamplingChain(SamplingConfig(regex="[ab]+\\."), vocab=VOCAB)
    logits = np.zeros((1, V), dtype=np.float32)
    logits[0, :2] = NEG_INF  # 'a' and 'b' ruled out by the model
    with pytest.raises(GenerationError, match="--regex leaves no token"):
        chain.numpy_logprobs(logits, np.zeros((1, 0), dtype=np.int64))
    assert isinstance(chain.rules[0], constraints.Regex)
