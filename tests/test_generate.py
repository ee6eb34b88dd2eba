"""Generation carries the state, is reproducible per seed, and batches equal single draws."""

from __future__ import annotations

import pytest
import torch

from chargen.config import ModelConfig
from chargen.errors import ConfigError, TokenizerError
from chargen.generate import Sample, generate
from chargen.items import Item
from chargen.models import build_model
from chargen.sampling import SamplingConfig
from chargen.tokenizer import build_tokenizer

TEXT = "hello world. the quick brown fox jumps over the lazy dog.\n"


@pytest.fixture
def model_and_tok():
    tok = build_tokenizer("char", TEXT)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(vocab_size=tok.vocab_size, embed_dim=8, hidden_size=32, num_layers=2)
    )
    return model.eval(), tok


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_state_carrying_equals_rereading_the_prefix(family: str) -> None:
    torch.manual_seed(1)
    model = build_model(
        ModelConfig(family=family, vocab_size=11, embed_dim=4, hidden_size=16, num_layers=2)
    ).eval()
    ids = torch.randint(0, 11, (1, 30))
    full, _ = model(ids)
    state = None
    for t in range(30):
        step, state = model(ids[:, t : t + 1], state)
        torch.testing.assert_close(step[0, 0], full[0, t], rtol=1e-5, atol=1e-6)


def test_same_seed_same_text_and_batch_equals_single(model_and_tok) -> None:
    model, tok = model_and_tok
    cfg = SamplingConfig(temperature=1.0)
    batch = generate(model, tok, "the ", length=60, sampling=cfg, num_samples=4, seed=10)
    singles = [
        generate(model, tok, "the ", length=60, sampling=cfg, seed=10 + i)[0] for i in range(4)
    ]
    assert [s.text for s in batch] == [s.text for s in singles]
    assert [s.seed for s in batch] == [10, 11, 12, 13]
    assert len({s.text for s in batch}) > 1
    again = generate(model, tok, "the ", length=60, sampling=cfg, seed=10)[0]
    assert again.text == singles[0].text


def test_golden_output_for_a_fixed_seed(model_and_tok) -> None:
    model, tok = model_and_tok
    (sample,) = generate(
        model, tok, "hello", length=30, sampling=SamplingConfig(temperature=1.0), seed=42
    )
    assert len(sample.text) == 30
    assert sample.text == GOLDEN_SEED_42


GOLDEN_SEED_42 = "hrvayt.tzjil\nytcy.saxqbnvtukul"  # untrained model, torch.manual_seed(0)


def test_temperature_zero_is_greedy(model_and_tok) -> None:
    model, tok = model_and_tok
    (sample,) = generate(
        model, tok, "the q", length=20, sampling=SamplingConfig(temperature=0.0), seed=1
    )
    (other,) = generate(
        model, tok, "the q", length=20, sampling=SamplingConfig(temperature=0.0), seed=99
    )
    assert sample.text == other.text
    # greedy: each token is the argmax of the model's distribution given the text so far
    ids = tok.encode("the q").tolist()
    for token in sample.tokens:
        logits, _ = model(torch.tensor([ids]))
        assert int(logits[0, -1].argmax()) == token
        ids.append(token)
    assert all(lp == pytest.approx(0.0) for lp in sample.logprobs)


def test_stop_sequences_cut_the_text(model_and_tok) -> None:
    model, tok = model_and_tok
    (free,) = generate(
        model, tok, "the ", length=200, sampling=SamplingConfig(temperature=1.0), seed=3
    )
    stop = free.text[5:7]
    streamed: list[str] = []
    (cut,) = generate(
        model,
        tok,
        "the ",
        length=200,
        sampling=SamplingConfig(temperature=1.0),
        seed=3,
        stop=[stop],
        on_text=lambda r, t: streamed.append(t),
    )
    assert cut.stop == stop
    assert cut.text == free.text[: free.text.index(stop)]
    assert "".join(streamed) == cut.text


def test_streaming_callback_sees_the_whole_text(model_and_tok) -> None:
    model, tok = model_and_tok
    pieces: list[str] = []
    (sample,) = generate(model, tok, "", length=50, seed=0, on_text=lambda r, t: pieces.append(t))
    assert "".join(pieces) == sample.text and len(pieces) == 50


def test_unknown_prompt_symbols(model_and_tok) -> None:
    model, tok = model_and_tok
    with pytest.warns(UserWarning):
        generate(model, tok, "the 🙂 fox", length=5)
    with pytest.raises(TokenizerError):
        generate(model, tok, "the 🙂 fox", length=5, unknown="error")
    with pytest.raises(TokenizerError, match="every symbol"):
        generate(model, tok, "🙂🙂", length=5, unknown="drop")


@pytest.mark.parametrize("kwargs", [{"length": -1}, {"length": 10**9}, {"num_samples": 0}])
def test_bad_requests(model_and_tok, kwargs) -> None:
    model, tok = model_and_tok
    with pytest.raises(ConfigError):
        generate(model, tok, "the", **kwargs)


@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("layers, embed", [(1, 8), (3, 8), (2, 0)])
def test_fused_step_equals_the_torch_kernels(family: str, layers: int, embed: int) -> None:
    from chargen.models.stepper import FusedStepper

    torch.manual_seed(2)
    cfg = ModelConfig(
        family=family,
        vocab_size=13,
        embed_dim=embed,
        hidden_size=24,
        num_layers=layers,
        dropout=0.3,
    )
    model = build_model(cfg).eval()
    stepper = FusedStepper(model)
    ids = torch.randint(0, 13, (5, 12))
    state = model.initial_state(5)
    fused_state = state
    for t in range(12):
        expected, state = model(ids[:, t : t + 1], state)
        got, fused_state = stepper.step(ids[:, t], fused_state)
        torch.testing.assert_close(got, expected[:, 0], rtol=1e-5, atol=1e-5)
        for a, b in zip(fused_state, state, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_item_record_sums_its_log_probabilities() -> None:
    sample = Sample("b", seed=9, tokens=[2, 0], pieces=["b", "\n"], logprobs=[-0.5, -0.25])
    item = Item("ab", sample)
    assert item.to_dict(0.7) == {
        "text": "ab",
        "seed": 9,
        "temperature": 0.7,
        "logprob": -0.75,
        "tokens": 2,
    }
    assert Item("ab", sample, "new").to_dict(1.0)["novelty"] == "new"
