"""The NumPy fast path of generation gives the tokens of the plain torch path for the same seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import chargen.generate as generate_module
from chargen.chain import SamplingChain
from chargen.config import ModelConfig
from chargen.errors import ConfigError
from chargen.generate import generate
from chargen.models import ForwardStepper, build_model
from chargen.models.stepper import FusedStepper
from chargen.numpy_generation import supports
from chargen.numpy_step import NumpyRNNStep
from chargen.rng import UniformDraws, uniforms
from chargen.sampling import SamplingConfig, entropy, process_logits, select_next
from chargen.tokenizer import build_tokenizer

TOK = build_tokenizer("char", "".join(chr(40 + i) for i in range(30)))

SHAPES = [
    dict(family=family, num_layers=layers, embed_dim=embed, tie_weights=tie, layer_norm=norm)
    for family, layers, embed, tie, norm in itertools.product(
        ["lstm", "gru"], [1, 2], [0, 12], [False, True], [False, True]
    )
    if not (tie and embed == 0)
]
CHAINS = [
    SamplingConfig(),
    SamplingConfig(temperature=0.6),
    SamplingConfig(temperature=0.0),
    SamplingConfig(temperature=1.4, top_k=7, repetition_penalty=1.3),
]


def _model(seed: int = 0, **shape) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(vocab_size=TOK.vocab_size, hidden_size=24, **shape)).eval()
    with torch.no_grad():  # sharper distributions than an untrained model's near-uniform ones
        model.head.weight.mul_(6.0)
    return model


@pytest.fixture
def plain_forward(monkeypatch):
    """The torch engine with each token through ``model.forward`` (PyTorch's RNN kernels)."""
    monkeypatch.setattr(generate_module, "build_stepper", ForwardStepper)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_numpy_engine_draws_the_plain_paths_tokens(shape, plain_forward) -> None:
    model = _model(**shape)
    for cfg in CHAINS:
        fast = generate(model, TOK, "(+,", length=120, num_samples=3, seed=5, sampling=cfg)
        plain = generate(
            model, TOK, "(+,", length=120, num_samples=3, seed=5, sampling=cfg, engine="torch"
        )
        for a, b in zip(fast, plain, strict=True):
            assert a.tokens == b.tokens, cfg
            assert a.text == b.text
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-5)
            np.testing.assert_allclose(a.entropies, b.entropies, atol=2e-5)


def test_numpy_engine_with_stops_and_streaming_equals_torch() -> None:
    model = _model()
    runs = []
    for engine in ("numpy", "torch"):
        seen: list[tuple[int, str]] = []
        out = generate(
            model,
            TOK,
            "(",
            length=300,
            num_samples=4,
            seed=9,
            stop=["+"],
            on_text=lambda r, t, seen=seen: seen.append((r, t)),
            engine=engine,
        )
        runs.append(([(s.text, s.stop, s.tokens) for s in out], seen))
    assert runs[0] == runs[1]
    assert any(stop == "+" for _, stop, _ in runs[0][0])


def test_numpy_step_equals_forward_and_keeps_the_state() -> None:
    for shape in SHAPES:
        model = _model(**shape)
        ids = torch.randint(0, TOK.vocab_size, (2, 15))
        full, state = model(ids)
        step = NumpyRNNStep.from_fused(FusedStepper(model), 0)
        step.add(model.initial_state(2))
        for t in range(15):
            logits = step.step(ids[:, t].numpy())
            np.testing.assert_allclose(logits, full[:, t].detach().numpy(), rtol=1e-4, atol=1e-4)
        for mine, theirs in zip(step.parts(), state, strict=True):
            np.testing.assert_allclose(mine, theirs.detach().numpy(), atol=1e-5)


def test_uniform_draws_equal_uniforms_exactly() -> None:
    for seeds in ([0], [2**64 - 1], [-5], [3, 1, -7, 2**70, 0]):
        draws = UniformDraws(seeds)
        for step in (0, 1, 17, 2**40, 2**65 + 3):
            np.testing.assert_array_equal(draws(step), uniforms(seeds, step).numpy())


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.01, 5.0, 0.0])
def test_a_temperature_chain_draws_process_logits_then_select_next(temperature: float) -> None:
    cfg = SamplingConfig(temperature=temperature)
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 9, generator=gen) * 4
    logits[5, 2] = logits[5, 7] = logits[5].max() + 1  # a tie for greedy: first index wins
    u = torch.rand(64, generator=gen, dtype=torch.float64)
    u[0], u[1] = 0.0, 1.0 - 2**-53  # the ends of [0, 1)
    logprobs = process_logits(logits, torch.zeros((64, 1), dtype=torch.long), cfg)
    expected = select_next(logprobs, u)
    for rows in (slice(0, 64), slice(7, 8)):  # the batched and the one-row code
        none = np.zeros((len(u[rows]), 0), dtype=np.int64)  # a temperature reads no history
        idx, logp, ent = SamplingChain(cfg).draw_arrays(logits[rows].numpy(), none, u[rows].numpy())
        np.testing.assert_array_equal(idx, expected[rows].numpy())
        chosen = logprobs[rows].gather(1, expected[rows, None])[:, 0]
        np.testing.assert_array_equal(logp, chosen.numpy())  # torch's log-softmax kernel
        np.testing.assert_allclose(ent, entropy(logprobs[rows]).numpy(), atol=1e-5)


def test_a_temperature_chain_never_picks_a_removed_token() -> None:
    logits = np.array([[0.0, -np.inf, 1.0, -np.inf]] * 3, dtype=np.float32)
    u = np.array([0.0, 0.5, 1.0 - 2**-53])
    idx, logp, ent = SamplingChain(SamplingConfig()).draw_arrays(
        logits, np.zeros((3, 0), dtype=np.int64), u
    )
    assert set(idx.tolist()) <= {0, 2}
    assert idx[-1] == 2
    assert np.isfinite(ent).all() and np.isfinite(logp).all()


def test_engine_choice_and_bad_engines() -> None:
    model = _model()
    assert supports(model)
    assert SamplingChain(SamplingConfig(temperature=0.5)).numpy_ok
    assert SamplingChain(SamplingConfig(top_p=0.9)).numpy_ok  # every rule has a NumPy version
    assert SamplingChain(SamplingConfig(temperature=0, repetition_penalty=1.2)).numpy_ok
    with pytest.raises(ConfigError, match="engine must be one of"):
        generate(model, TOK, "(", length=3, engine="fast")
    transformer = build_model(
        ModelConfig(
            family="transformer",
            vocab_size=TOK.vocab_size,
            embed_dim=16,
            hidden_size=16,
            num_heads=2,
            context_size=16,
        )
    )
    assert not supports(transformer)
    with pytest.raises(ConfigError, match="numpy engine"):
        generate(transformer, TOK, "(", length=3, engine="numpy")
    assert generate(transformer, TOK, "(", length=3)[0].tokens  # auto falls back to torch
