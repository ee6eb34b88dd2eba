"""The one token loop (``token_loop.py``): streams in one batch draw what each draws alone.

Oracles: ``generate`` of each request alone (one stream, one loop) for the batch, the rows of
a fresh model read for the row steppers' gathers, and ``rng.uniforms`` row by row for the
vectorised uniforms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chargen.chain import SamplingChain
from chargen.config import ModelConfig
from chargen.generate import generate, prompt_state, read_prompt, row_stepper
from chargen.inspect_next import next_distribution
from chargen.models import build_model
from chargen.models.stepper import TorchRows
from chargen.numpy_step import NumpyRNNStep
from chargen.rng import UniformDraws, uniforms, uniforms_at
from chargen.sampling import SamplingConfig
from chargen.token_loop import Stream, TokenLoop
from chargen.tokenizer import build_tokenizer

TEXT = "hello world. the quick brown fox jumps over the lazy dog.\n" * 3

# requests as a server sees them: different rules, lengths and prompts, some reading history
REQUESTS = [
    ("the ", SamplingConfig(temperature=0.7), 40, 3),
    ("hello", SamplingConfig(top_k=5, temperature=1.2), 25, 4),
    ("", SamplingConfig(repetition_penalty=1.5, top_p=0.9), 33, 5),
    ("the quick brown fox jumps over the lazy dog", SamplingConfig(min_p=0.1), 12, 6),
    ("lazy ", SamplingConfig(temperature=0.7), 40, 7),  # shares a pass with the first
    ("dog", SamplingConfig(temperature=0.0), 20, 8),
    ("o", SamplingConfig(dry_multiplier=0.8, mirostat_tau=3.0), 30, 9),
]


@pytest.fixture(params=["lstm", "gru", "transformer"])
def model_and_tok(request: pytest.FixtureRequest):
    tok = build_tokenizer("char", TEXT)
    torch.manual_seed(3)
    config = ModelConfig(
        family=request.param, vocab_size=tok.vocab_size, embed_dim=8, hidden_size=32, num_layers=2
    )
    return build_model(config).eval(), tok


def _stream(model, tok, prompt: str, cfg: SamplingConfig, length: int, seed: int):
    ids = tok.encode(prompt).tolist() or [tok.encode("\n").tolist()[0]]
    chain = SamplingChain(cfg, vocab=tok.token_texts(range(tok.vocab_size)))
    return Stream(chain, [seed], ids, length), ids


@torch.inference_mode()
def test_streams_joining_and_leaving_draw_what_each_draws_alone(model_and_tok) -> None:
    """Requests join the batch at different ticks, leave when done, and each stream's tokens
    equal ``generate`` of that request alone (and its log-probabilities, to float32 rounding)."""
    model, tok = model_and_tok
    loop = TokenLoop(row_stepper(model))
    waiting = list(REQUESTS)
    finished: dict[int, Stream] = {}
    tick = 0
    while waiting or loop.streams:
        if waiting and tick % 3 == 0:  # a new request every third tick
            prompt, cfg, length, seed = waiting.pop(0)
            stream, ids = _stream(model, tok, prompt, cfg, length, seed)
            loop.add(stream, prompt_state(model, loop.stepper, ids))
        assert loop.tick() == []
        done = [s for s in loop.streams if s.full]
        for stream in done:
            finished[stream.seeds[0]] = stream
        loop.remove(done)
        tick += 1
    assert loop.stepper.rows == 0
    for prompt, cfg, length, seed in REQUESTS:
        (alone,) = generate(model, tok, prompt, length=length, sampling=cfg, seed=seed)
        got = finished[seed]
        assert got.history[0, len(got.prompt) :].tolist() == alone.tokens, (prompt, cfg)
        # BLAS may round a row differently in a batch of another size: the last bit only
        np.testing.assert_allclose(got.logprobs[0], alone.logprobs, rtol=1e-6, atol=1e-6)


def test_a_stream_of_k_rows_equals_k_streams_of_one(model_and_tok) -> None:
    model, tok = model_and_tok
    cfg = SamplingConfig(temperature=1.1, top_k=8)
    together = generate(model, tok, "the ", length=30, sampling=cfg, num_samples=4, seed=20)
    for r, sample in enumerate(together):
        (alone,) = generate(model, tok, "the ", length=30, sampling=cfg, seed=20 + r)
        assert sample.tokens == alone.tokens


def test_non_finite_rows_fail_only_their_stream(model_and_tok) -> None:
    model, tok = model_and_tok
    loop = TokenLoop(row_stepper(model))
    good, ids = _stream(model, tok, "the ", SamplingConfig(), 5, 1)
    bad, _ = _stream(model, tok, "the ", SamplingConfig(), 5, 2)
    loop.add(good, prompt_state(model, loop.stepper, ids))
    loop.add(bad, prompt_state(model, loop.stepper, ids))
    real = loop.stepper.step

    def poisoned(last: np.ndarray) -> np.ndarray:
        logits = np.array(real(last))
        logits[1, 0] = np.nan  # the second stream's row
        return logits

    loop.stepper.step = poisoned  # type: ignore[method-assign]
    (failed,) = loop.tick()
    assert failed.stream is bad and "not finite" in str(failed.cause)
    assert good.made == 1 and bad.made == 0


def test_row_steppers_keep_and_add_rows_like_a_fresh_read(model_and_tok) -> None:
    """Rows gathered (with repeats) and appended step on as the same prompts read afresh."""
    model, tok = model_and_tok
    prompts = [tok.encode(p).tolist() for p in ("the ", "hello w", "lazy dog")]
    steppers = [TorchRows(model, row_stepper(model, "torch").stepper)]  # type: ignore[attr-defined]
    if model.config.family != "transformer":
        steppers.append(row_stepper(model, "numpy"))  # type: ignore[arg-type]
    for rows in steppers:
        for ids in prompts:
            rows.add(read_prompt(model, ids))
        order = np.array([2, 0, 0, 1])
        rows.keep(order)
        last = np.array([prompts[i][-1] for i in order])
        got = rows.step(last)
        for r, i in enumerate(order):
            fresh, _ = model(torch.tensor([prompts[i]]))
            torch.testing.assert_close(torch.from_numpy(got[r]), fresh[0, -1], rtol=1e-4, atol=1e-5)


def test_a_numpy_fork_shares_the_weights_and_starts_from_zero() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=9, embed_dim=4, hidden_size=16)).eval()
    rows = row_stepper(model, "numpy")
    assert isinstance(rows, NumpyRNNStep)
    rows.add(read_prompt(model, [1, 2, 3, 4]))
    fork = rows.fork(1)
    assert fork.table is rows.table and fork.rows == 1 and not fork.h.any()
    np.testing.assert_array_equal(
        fork.parts()[0], prompt_state(model, rows, [5])[0]
    )  # a one-token prompt reads nothing


def test_uniforms_at_each_row_s_own_step_equals_uniforms() -> None:
    seeds = [0, 1, 2**63, -5, 123456789]
    steps = np.array([0, 7, 3, 2**40, 5], dtype=np.int64)
    got = uniforms_at(UniformDraws(seeds).mixed, steps)
    for r, (seed, step) in enumerate(zip(seeds, steps, strict=True)):
        assert got[r] == float(uniforms([seed], int(step))[0])


def test_the_xray_s_last_stage_is_what_the_first_draw_samples_from(model_and_tok) -> None:
    model, tok = model_and_tok
    for cfg in (SamplingConfig(temperature=0.8, top_k=6), SamplingConfig(top_p=0.5)):
        found = next_distribution(model, tok, "the qu", cfg)
        (sample,) = generate(model, tok, "the qu", length=1, sampling=cfg, seed=4)
        last = found.stages[-1][1][0]
        assert float(last[sample.tokens[0]]) == pytest.approx(sample.logprobs[0], abs=1e-6)
        assert torch.isfinite(last).sum() >= 1
