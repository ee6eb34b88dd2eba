"""Model families: one interface, training lowers the loss, cached steps equal re-reading."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chargen.checkpoint import load_run
from chargen.cli import main as cli_main
from chargen.config import ModelConfig
from chargen.models import (
    REGISTRY,
    FusedStepper,
    TransformerLanguageModel,
    build_model,
    build_stepper,
    concat_states,
    count_parameters,
    expand_state,
    select_state,
)
from tests.conftest import make_text

V = 23

FAMILIES = {
    "lstm": {"family": "lstm"},
    "lstm-deep": {
        "family": "lstm",
        "num_layers": 3,
        "dropout": 0.2,
        "tie_weights": True,
        "layer_norm": True,
    },
    "lstm-onehot": {"family": "lstm", "embed_dim": 0, "num_layers": 2},
    "gru": {"family": "gru", "num_layers": 2, "tie_weights": True},
    "gru-tied-same-width": {"family": "gru", "embed_dim": 32, "tie_weights": True},
    "transformer": {"family": "transformer", "num_layers": 2, "context_size": 8},
    "transformer-learned": {
        "family": "transformer",
        "num_layers": 2,
        "context_size": 8,
        "positions": "learned",
        "tie_weights": True,
    },
    "transformer-narrow-embed": {"family": "transformer", "embed_dim": 8, "context_size": 8},
}


def _model(options: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    base = {"vocab_size": V, "embed_dim": 16, "hidden_size": 32, "num_heads": 4}
    model = build_model(ModelConfig(**{**base, **options}))
    with torch.no_grad():  # non-trivial norms and biases, so the tests see them
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_every_family_is_registered() -> None:
    assert set(REGISTRY) == {"lstm", "gru", "transformer"}


@pytest.mark.parametrize("name", FAMILIES)
def test_reading_in_pieces_equals_reading_at_once(name: str) -> None:
    """Carried state: chunks of any size give the logits of one long read (context 8 < 21)."""
    model = _model(FAMILIES[name])
    ids = torch.randint(0, V, (3, 21), generator=torch.Generator().manual_seed(1))
    whole, _ = model(ids, model.initial_state(3))
    state = model.initial_state(3)
    pieces = []
    for a, b in [(0, 5), (5, 6), (6, 15), (15, 21)]:
        logits, state = model(ids[:, a:b], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, 1), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_generation_steps_equal_re_reading_the_prefix(name: str) -> None:
    """The stepper (fused for RNNs, KV-cached for Transformers) equals a fresh full read.

    For the Transformer the full read is within the context, and the fresh read is the
    plain causal-attention path (no cache).
    """
    model = _model(FAMILIES[name])
    ids = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(2))
    stepper = build_stepper(model)
    if model.config.family != "transformer":
        assert isinstance(stepper, FusedStepper)
    state = model.initial_state(2)
    for t in range(ids.shape[1]):
        step_logits, state = stepper.step(ids[:, t], state)
        with torch.no_grad():
            fresh, _ = model(ids[:, : t + 1])
        torch.testing.assert_close(step_logits, fresh[:, -1], atol=1e-5, rtol=1e-5)


def _sliding_reference(model: TransformerLanguageModel, ids: torch.Tensor) -> torch.Tensor:
    """Rotary Transformer over a long text by brute force: every query sees the last
    ``context`` positions, positions absolute, no cache or ring buffer."""
    b, n = ids.shape
    positions = torch.arange(n).expand(b, n)
    gap = positions[0][:, None] - positions[0][None, :]
    mask = (gap >= 0) & (gap < model.context)
    x = model._embed(ids, positions)
    rope = model._rope(positions)
    for block in model.blocks:
        q, k, v = block.project(x, rope)
        x = block.finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    return model._logits(x)


def test_rotary_cache_beyond_the_context_equals_a_sliding_window() -> None:
    model = _model(FAMILIES["transformer"])
    ids = torch.randint(0, V, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = _sliding_reference(model, ids)
    stepper = build_stepper(model)
    state = model.initial_state(2)
    steps = []
    for t in range(30):
        logits, state = stepper.step(ids[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), reference, atol=1e-5, rtol=1e-5)


def test_learned_positions_beyond_the_context_re_read_the_window() -> None:
    model = _model(FAMILIES["transformer-learned"])
    ctx = model.context
    ids = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(4))
    stepper = build_stepper(model)
    state = model.initial_state(2)
    for t in range(20):
        logits, state = stepper.step(ids[:, t], state)
        with torch.no_grad():
            fresh, _ = model(ids[:, max(0, t + 1 - ctx) : t + 1])
        torch.testing.assert_close(logits, fresh[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm-deep", "gru", "transformer", "transformer-learned"])
def test_rows_at_different_positions_step_together_as_alone(name: str) -> None:
    """What the server does: states of different requests (different lengths) batched."""
    model = _model(FAMILIES[name])
    stepper = build_stepper(model)
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, V, (1, n), generator=gen) for n in (3, 7, 12)]
    states = []
    for p in prompts:
        _, s = model(p[:, :-1], model.initial_state(1))
        states.append(s)
    alone = []
    for p, s in zip(prompts, states, strict=True):
        s = tuple(t.clone() for t in s)
        logits, s = stepper.step(p[:, -1], s)
        logits2, _ = stepper.step(logits.argmax(1), s)
        alone.append(torch.cat([logits, logits2]))
    last = torch.cat([p[:, -1] for p in prompts])
    logits, state = stepper.step(last, concat_states(states))
    logits2, _ = stepper.step(logits.argmax(1), state)
    for row in range(3):
        torch.testing.assert_close(logits[row], alone[row][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits2[row], alone[row][1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "transformer", "transformer-learned"])
def test_select_and_expand_copy_rows(name: str) -> None:
    model = _model(FAMILIES[name])
    _, state = model(torch.tensor([[1, 2, 3]]), model.initial_state(1))
    wide = expand_state(state, 4)
    assert all(s.shape[1] == 4 for s in wide)
    picked = select_state(wide, torch.tensor([2, 0]))
    for a, b in zip(picked, state, strict=True):
        torch.testing.assert_close(a[:, :1], b)
    # rows are copies: stepping one expanded row leaves the original state untouched
    before = [s.clone() for s in state]
    build_stepper(model).step(torch.tensor([4, 4, 4, 4]), wide)
    for a, b in zip(state, before, strict=True):
        assert torch.equal(a, b)


def test_weight_tying_shares_one_matrix_and_counts_it_once() -> None:
    tied = _model({"family": "lstm", "tie_weights": True})
    untied = _model({"family": "lstm"})
    assert tied.head.weight is tied.embed.weight
    assert tied.proj is not None and tied.proj.weight.shape == (16, 32)
    assert count_parameters(untied) - count_parameters(tied) == V * 32 - 32 * 16


@pytest.mark.parametrize("name", ["lstm-deep", "gru", "transformer", "transformer-learned"])
def test_every_family_trains_and_serves_every_command(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Train on a small text (the loss falls well below the unigram entropy), then generate,
    eval, inspect and score through the CLI; the run folder names the family."""
    options = FAMILIES[name]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(8000), encoding="utf-8")
    run = tmp_path / "run"
    flags = [
        "--model",
        options["family"],
        "--layers",
        str(options.get("num_layers", 1)),
        "--embed-dim",
        "32",
        "--hidden-size",
        "32",
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "5",
        "--eval-every",
        "30",
        "--sample-length",
        "10",
        "--threads",
        "1",
        "--dropout",
        str(options.get("dropout", 0.0)),
    ]
    if options.get("tie_weights"):
        flags.append("--tie-weights")
    if options.get("layer_norm"):
        flags.append("--layer-norm")
    if options["family"] == "transformer":
        flags += ["--num-heads", "2", "--context-size", "32"]
        flags += ["--positions", options.get("positions", "rotary")]
    assert cli_main(["train", str(corpus), "--out", str(run), "--steps", "60", *flags]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["family"] == options["family"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "val_nats_per_char" in m]
    assert evals[-1]["val_nats_per_char"] < 2.2  # unigram entropy of this text is ~2.7 nats
    assert evals[-1]["val_nats_per_char"] < evals[0]["val_nats_per_char"]
    _, _, model = load_run(run)
    assert model.config.family == options["family"]
    capsys.readouterr()
    assert (
        cli_main(["generate", str(run), "--length", "80", "--seed", "1", "--format", "jsonl"]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len([r for r in rows if "token" in r]) == 80
    assert cli_main(["generate", str(run), "--length", "20", "--beams", "3"]) == 0
    assert cli_main(["eval", str(run), "--json"]) == 0
    assert cli_main(["inspect", str(run), "--prompt", "the cat "]) == 0
    text = tmp_path / "score.txt"
    text.write_text("the cat sees the moon.\n", encoding="utf-8")
    assert cli_main(["score", str(run), str(text)]) == 0
    _served_equals_generated(run)


def _served_equals_generated(run: Path) -> None:
    """Concurrent requests with prompts of different lengths share model steps on the server
    (rows at different positions in one batch); each equals ``generate`` for its seed."""
    import concurrent.futures

    if importlib.util.find_spec("fastapi") is None:
        return
    from fastapi.testclient import TestClient

    from chargen.generate import generate
    from chargen.sampling import SamplingConfig
    from chargen.server.app import create_app

    _, tokenizer, model = load_run(run)
    prompts = ["a", "the old man sees ", "every child likes the river. the cat "]
    with TestClient(create_app(run)) as client, concurrent.futures.ThreadPoolExecutor(3) as pool:
        served = list(
            pool.map(
                lambda i: client.post(
                    "/v1/generate", json={"prompt": prompts[i], "length": 60, "seed": i}
                ).json(),
                range(3),
            )
        )
    for i, data in enumerate(served):
        (expected,) = generate(
            model, tokenizer, prompts[i], length=60, sampling=SamplingConfig(), seed=i
        )
        assert data["text"] == expected.text


def test_every_preset_builds_a_trainable_configuration() -> None:
    from chargen.config import PRESETS, check_compatible, get_preset

    for name in PRESETS:
        preset = get_preset(name)
        preset.model.validate()
        preset.train.validate()
        check_compatible(preset.model, preset.train)
        build_model(ModelConfig(**{**preset.model.to_dict(), "vocab_size": V}))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "transformer", "--embed-dim", "0"], "needs an embedding"),
        (["--model", "transformer", "--hidden-size", "30", "--num-heads", "4"], "multiple of"),
        (["--model", "transformer", "--context-size", "16", "--seq-len", "32"], "--context-size"),
        (["--model", "transformer", "--positions", "sinusoid"], "--positions must be"),
        (["--model", "lstm", "--embed-dim", "0", "--tie-weights"], "--tie-weights needs"),
        (["--model", "mamba"], "--model must be one of"),
    ],
)
def test_bad_family_options_are_one_line_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(2000), encoding="utf-8")
    run = tmp_path / "run"
    assert cli_main(["train", str(corpus), "--out", str(run), "--steps", "1", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()
