"""``--clamp LAYER:KIND:UNIT=VALUE``: units held at every step, in every engine.

The oracle for the recurrent families is the cell equations written out here by hand (PyTorch's
gate order), with the held value set in the state between them; for the Transformer, one
uncached forward pass over the whole text with the GELU outputs overwritten by a hook of the
test's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chargen.clamp import Clamps, parse
from chargen.config import ModelConfig
from chargen.errors import ConfigError, SamplingError
from chargen.generate import beam_generate, generate, start_token
from chargen.inspect_next import next_logits
from chargen.models import build_model
from chargen.sampling import SamplingConfig
from chargen.tokenizer import CharTokenizer
from tests.conftest import make_text, run_chargen

TEXT = make_text(2_000, seed=5)
TOKENIZER = CharTokenizer.build(TEXT)


def _model(family: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(3)
    config = ModelConfig(
        family=family,
        vocab_size=TOKENIZER.vocab_size,
        embed_dim=8,
        hidden_size=12,
        num_layers=2,
        **extra,  # type: ignore[arg-type]
    )
    return build_model(config).eval()


def _by_hand(model: torch.nn.Module, ids: list[int], held: dict) -> torch.Tensor:
    """Logits after reading ``ids`` with the LSTM/GRU equations written out; ``held``:
    {(layer, kind, unit): value} set after each step's c (cell) or h (hidden)."""
    rnn = model.rnn
    layers, size = model.config.num_layers, model.config.hidden_size
    lstm = model.config.family == "lstm"
    h = [torch.zeros(size) for _ in range(layers)]
    c = [torch.zeros(size) for _ in range(layers)]

    def hold(k: int, kind: str, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        for (layer, name, unit), value in held.items():
            if (layer, name) == (k, kind):
                x[unit] = value
        return x

    with torch.no_grad():
        for token in ids:
            x = model.embed_ids(torch.tensor([[token]]))[0, 0]
            for k in range(layers):
                w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
                b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
                if lstm:
                    i, f, g, o = (w_ih @ x + b_ih + w_hh @ h[k] + b_hh).chunk(4)
                    c[k] = hold(
                        k, "cell", torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
                    )
                    h[k] = hold(k, "hidden", torch.sigmoid(o) * torch.tanh(c[k]))
                else:
                    i_r, i_z, i_n = (w_ih @ x + b_ih).chunk(3)
                    h_r, h_z, h_n = (w_hh @ h[k] + b_hh).chunk(3)
                    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                    n = torch.tanh(i_n + r * h_n)
                    h[k] = hold(k, "hidden", (1 - z) * n + z * h[k])
                x = h[k]
        return model.output(x[None])


@pytest.mark.parametrize(
    ("family", "specs"),
    [
        ("lstm", ["0:cell:3=2.5"]),
        ("lstm", ["1:hidden:0=-0.9", "0:cell:7=-1.25"]),
        ("gru", ["0:hidden:5=0.75", "1:hidden:11=-1"]),
    ],
)
def test_clamped_distribution_equals_the_state_set_by_hand(family: str, specs: list[str]) -> None:
    model = _model(family)
    prompt = "the cat sees the moon.\na dog"
    ids = [start_token(TOKENIZER)] + TOKENIZER.encode(prompt).tolist()
    held = {(h.layer, h.kind, h.index): h.value for h in parse(specs)}
    _, logits = next_logits(model, TOKENIZER, prompt, clamp=specs)
    expected = _by_hand(model, ids[1:], held)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    _, free = next_logits(model, TOKENIZER, prompt)
    torch.testing.assert_close(free, _by_hand(model, ids[1:], {}), atol=1e-5, rtol=1e-5)
    assert (logits - free).abs().max() > 1e-3  # holding the unit changed the distribution


def test_transformer_mlp_clamp_equals_an_uncached_pass_with_the_units_overwritten() -> None:
    model = _model("transformer", num_heads=2, context_size=64)
    prompt = "every child draws the river"
    ids = TOKENIZER.encode(prompt).tolist()
    specs = ["0:mlp:5=3", "1:mlp:40=-0.5"]
    _, logits = next_logits(model, TOKENIZER, prompt, clamp=specs)

    def overwrite(unit: int, value: float):  # the test's own hook
        def hook(_module, _inputs, out):
            out = out.clone()
            out[..., unit] = value
            return out

        return hook

    hooks = [
        model.blocks[0].act.register_forward_hook(overwrite(5, 3.0)),
        model.blocks[1].act.register_forward_hook(overwrite(40, -0.5)),
    ]
    try:
        with torch.no_grad():
            whole, _ = model(torch.tensor([ids]))  # one uncached pass, no KV cache
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(logits, whole[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_numpy_and_torch_engines_draw_the_same_clamped_tokens(family: str) -> None:
    model = _model(family)
    unit = "0:cell:3=3" if family == "lstm" else "1:hidden:2=0.95"
    cfg = SamplingConfig(temperature=0.9, top_p=0.95, clamp=(unit,))
    runs = {
        engine: generate(
            model, TOKENIZER, "the ", length=80, sampling=cfg, num_samples=3, seed=11, engine=engine
        )
        for engine in ("numpy", "torch")
    }
    assert [s.tokens for s in runs["numpy"]] == [s.tokens for s in runs["torch"]]
    free = generate(
        model, TOKENIZER, "the ", length=80, sampling=SamplingConfig(0.9, top_p=0.95), seed=11
    )
    assert free[0].tokens != runs["numpy"][0].tokens


def test_beams_hold_the_units_too() -> None:
    model = _model("lstm")
    cfg = SamplingConfig(temperature=0.0, clamp=("1:hidden:4=1",))
    (greedy,) = generate(model, TOKENIZER, "a ", length=30, sampling=cfg)
    (beam,) = beam_generate(model, TOKENIZER, "a ", beams=1, length=30, sampling=cfg)
    assert beam.tokens == greedy.tokens  # a beam of one is greedy decoding


def test_transformer_generation_is_the_same_clamped_or_cached() -> None:
    """Each generated token equals the argmax of an uncached pass with the same units held."""
    model = _model("transformer", num_heads=2, context_size=64)
    cfg = SamplingConfig(temperature=0.0, clamp=("0:mlp:9=2",))
    (sample,) = generate(model, TOKENIZER, "the ", length=12, sampling=cfg)
    text = "the "
    for token in sample.tokens:
        _, logits = next_logits(model, TOKENIZER, text, clamp=cfg.clamp)
        assert int(logits.argmax()) == token
        text += TOKENIZER.decode([token])


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("0:cell", "write LAYER:KIND:UNIT=VALUE"),
        ("0:cell:3=nan", "write LAYER:KIND:UNIT=VALUE"),
        ("0:cell:3=1e9", "must be in [-100, 100]"),
        ("a:cell:3=1", "write LAYER:KIND:UNIT=VALUE"),
    ],
)
def test_bad_specs_are_one_line(spec: str, needle: str) -> None:
    with pytest.raises(SamplingError, match="--clamp") as caught:
        SamplingConfig(clamp=(spec,)).validate()
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("family", "spec", "needle"),
    [
        ("lstm", "0:cell:12=1", "layer 0 has 12 cell units, numbered 0 to 11"),
        ("lstm", "2:cell:0=1", "the model has 2 layer(s)"),
        ("gru", "0:cell:0=1", "a gru model has units of kind hidden"),
        ("transformer", "0:hidden:0=1", "units of kind mlp"),
    ],
)
def test_a_unit_the_model_lacks_is_named(family: str, spec: str, needle: str) -> None:
    extra = {"num_heads": 2, "context_size": 16} if family == "transformer" else {}
    model = _model(family, **extra)
    with pytest.raises(ConfigError, match="--clamp") as caught:
        Clamps.build(model, [spec])
    assert needle in str(caught.value)


def test_stacked_rows_hold_only_their_own_units() -> None:
    model = _model("lstm")
    one = Clamps.build(model, ["0:cell:1=2"])
    stacked = Clamps.stack([None, one, None])
    assert stacked is not None
    x = torch.zeros(3, 12)
    out = stacked.apply(0, "cell", x)
    assert out[1, 1] == 2 and out.abs().sum() == 2
    assert Clamps.stack([None, None]) is None


def test_cli_generate_and_inspect_hold_units(trained_run: Path) -> None:
    base = ["generate", str(trained_run), "--prompt", "the ", "--length", "60", "--seed", "4"]
    free = run_chargen(*base)
    held = run_chargen(*base, "--clamp", "0:cell:0=5", "--clamp", "0:cell:1=-5")
    assert free.returncode == 0 and held.returncode == 0, held.stderr
    assert held.stdout != free.stdout
    cfg = SamplingConfig(clamp=("0:cell:0=5", "0:cell:1=-5"))
    from chargen.checkpoint import load_run

    _, tokenizer, model = load_run(trained_run)
    (expected,) = generate(model, tokenizer, "the ", length=60, sampling=cfg, seed=4)
    assert held.stdout.rstrip("\n") == "the " + expected.text

    table = run_chargen(
        "inspect", str(trained_run), "--prompt", "the ", "--clamp", "0:cell:0=5", "--format", "json"
    )
    assert table.returncode == 0, table.stderr
    _, logits = next_logits(model, tokenizer, "the ", clamp=["0:cell:0=5"])
    probs = torch.softmax(logits[0], -1)
    shown = json.loads(table.stdout)
    column = shown["columns"].index("T=1")
    first = tokenizer.stoi[shown["tokens"][0]]
    assert shown["probs"][0][column] == pytest.approx(float(probs[first]), abs=1e-6)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("0:cell:99999=1", "numbered 0 to 47"), ("0:cell:1=inf", "LAYER:KIND:UNIT=VALUE")],
)
def test_cli_bad_clamp_is_one_line_and_status_2(trained_run: Path, spec: str, needle: str) -> None:
    result = run_chargen("generate", str(trained_run), "--clamp", spec)  # no seed line first
    assert result.returncode == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_server_holds_each_requests_own_units(trained_run: Path) -> None:
    """Clamped and free requests in flight together: each equals ``generate`` with its own
    units (one model step per tick, each row its own), and the model steps were shared."""
    import concurrent.futures

    pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
    from fastapi.testclient import TestClient

    from chargen.checkpoint import load_run
    from chargen.server.app import create_app

    _, tokenizer, model = load_run(trained_run)
    units = [(), ("0:cell:0=5",), ("0:hidden:3=-1", "0:cell:7=2"), ()]
    bodies = [
        {"prompt": "a dog ", "length": 80, "seed": s, "temperature": 0.8, "clamp": list(u)}
        for s, u in enumerate(units)
    ]
    app = create_app(trained_run)
    with TestClient(app) as client:
        before = app.state.batcher.steps
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: client.post("/v1/generate", json=b), bodies))
        steps = app.state.batcher.steps - before
        bad = client.post("/v1/generate", json={"clamp": ["0:cell:48=1"]})
        shown = client.post(
            "/v1/distribution", json={"prompt": "a dog ", "clamp": ["0:cell:0=5"], "top": 3}
        )
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        cfg = SamplingConfig(temperature=0.8, clamp=tuple(body["clamp"]))
        (expected,) = generate(
            model, tokenizer, "a dog ", length=80, sampling=cfg, seed=body["seed"]
        )
        assert answer.json()["text"] == expected.text
    assert answers[0].json()["text"] != answers[1].json()["text"]
    assert steps < 4 * 80  # the requests shared model steps
    assert bad.status_code == 422 and "numbered 0 to 47" in bad.json()["detail"]
    _, logits = next_logits(model, tokenizer, "a dog ", clamp=["0:cell:0=5"])
    top = torch.topk(torch.log_softmax(logits[0], -1), 3)
    assert shown.json()["logprobs"] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_python_api_holds_units(trained_run: Path) -> None:
    import chargen

    run = chargen.load(trained_run)
    held = run.generate("the ", 50, 0.8, seed=3, clamp=["0:cell:0=5"])
    cfg = SamplingConfig(temperature=0.8, clamp=("0:cell:0=5",))
    (expected,) = generate(run.model, run.tokenizer, "the ", length=50, sampling=cfg, seed=3)
    assert held == expected.text != run.generate("the ", 50, 0.8, seed=3)
