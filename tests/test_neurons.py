"""The neuron lab: recording every unit, text features, correlations, the CLI and the page.

Oracles: the fused one-token step (``FusedStepper``) for the recorded LSTM / GRU states, the
model's own one-token forward for the Transformer's MLP units, ``numpy.corrcoef`` for r,
character-by-character loops for the features, and a model whose weights are set by hand so
that one cell flips at every double quote (it must be found first for "inside double quotes").
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen import neurons
from chargen.checkpoint import RunConfig, save_config, save_tokenizer, save_weights
from chargen.cli import main as cli_main
from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.errors import ConfigError
from chargen.generate import start_token
from chargen.models import FusedStepper, build_model
from chargen.neurons import (
    choose_units,
    colour_scales,
    constant_features,
    correlations,
    feature_matrix,
    quantise,
    rank_units,
    record,
)
from chargen.text_features import BUILTIN, definition, parse_feature, regex_feature, text_features
from chargen.tokenizer import CharTokenizer
from tests.browser import ABSENT, CHROMIUM, CHROMIUM_ARGS

ALPHABET = 'abcdefghij klmnop.,"()\n'
PLANTED = 3  # the hand-set cell of layer 0


def quoted_text(chars: int, seed: int = 0) -> str:
    """Words, some of them in double quotes, some lines with brackets."""
    rng = random.Random(seed)
    words = ["ab", "cde", "fig", "hij", "klm", "nop", "a", "be", "dog"]
    out: list[str] = []
    size = 0
    while size < chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        if rng.random() < 0.6:
            line += f' "{" ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))}"'
        if rng.random() < 0.3:
            line = f"({line})"
        line += ".\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:chars]


def planted_model(tokenizer: CharTokenizer, layers: int = 2, hidden: int = 8):
    """An LSTM (one-hot input) whose layer-0 cell ``PLANTED`` is +1 inside double quotes and -1
    after a closing one: on '"' it forgets and writes tanh(5 - 60 h), which is +1 when h <= 0
    (outside) and -1 when h > 0 (inside); elsewhere it keeps its value. Its output gate varies
    with the character, so its hidden state is a noisier copy. No other unit sees it."""
    torch.manual_seed(0)
    config = ModelConfig(
        family="lstm",
        vocab_size=tokenizer.vocab_size,
        embed_dim=0,
        hidden_size=hidden,
        num_layers=layers,
    )
    model = build_model(config)
    rnn = model.rnn
    quote = tokenizer.stoi['"']
    u, h = PLANTED, hidden
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
        rows = [u, h + u, 2 * h + u, 3 * h + u]  # i, f, g, o
        for row in rows:
            w_hh[row] = 0.0
            rnn.bias_ih_l0[row] = 0.0
            rnn.bias_hh_l0[row] = 0.0
        w_hh[:, u] = 0.0  # no other unit of layer 0 reads it
        w_ih[u] = -10.0
        w_ih[u, quote] = 10.0  # input gate: open on a quote only
        w_ih[h + u] = 10.0
        w_ih[h + u, quote] = -10.0  # forget gate: forget on a quote only
        w_ih[2 * h + u] = 5.0
        w_hh[2 * h + u, u] = -60.0  # candidate: minus the sign of h
        w_ih[3 * h + u] = torch.rand(tokenizer.vocab_size, generator=gen) * 2 - 1
        for k in range(1, layers):
            getattr(rnn, f"weight_ih_l{k}")[:, u] = 0.0  # nor does the next layer
        model.head.weight[:, u] = 0.0
    return model.eval()


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """[opening quote, closing quote) of each quoted stretch."""
    marks = [i for i, ch in enumerate(text) if ch == '"']
    return list(zip(marks[0::2], marks[1::2], strict=False))


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("neurons") / "planted"
    run.mkdir()
    tokenizer = CharTokenizer(sorted(ALPHABET))
    model = planted_model(tokenizer)
    config = RunConfig(model.config, TrainConfig(), DataConfig(source="planted"))
    save_config(run, config)
    save_tokenizer(run, tokenizer)
    save_weights(run / "model.safetensors", model)
    return run


# --------------------------------------------------------------------------- recording
@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("embed_dim", [0, 6])
def test_recording_equals_the_fused_step(
    family: str, embed_dim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neurons, "CHUNK", 7)  # several chunks, the state carried across
    text = quoted_text(40, seed=3)
    tokenizer = CharTokenizer.build(text)
    torch.manual_seed(0)
    config = ModelConfig(
        family=family,
        vocab_size=tokenizer.vocab_size,
        embed_dim=embed_dim,
        hidden_size=10,
        num_layers=2,
        layer_norm=True,
    )
    model = build_model(config).eval()
    rec = record(model, tokenizer, text)
    assert rec.activations.shape == (len(text), (4 if family == "lstm" else 2) * 10)
    assert rec.activations.dtype == np.float32

    stepper = FusedStepper(model)
    state = model.initial_state(1)
    ids = [start_token(tokenizer), *tokenizer.encode(text).tolist()]
    for i, token in enumerate(ids):
        logits, state = stepper.step(torch.tensor([token]), state)
        if i == 0:
            continue
        row = rec.activations[i - 1]
        for k in range(2):
            h = state[0][k, 0].numpy()
            if family == "lstm":
                c = state[1][k, 0].numpy()
                np.testing.assert_allclose(row[rec.column(k, "cell", 0) :][:10], c, atol=1e-5)
                np.testing.assert_allclose(row[rec.column(k, "hidden", 0) :][:10], h, atol=1e-5)
            else:
                np.testing.assert_allclose(row[rec.column(k, "hidden", 0) :][:10], h, atol=1e-5)
        probs = torch.softmax(logits[0], -1)
        top = torch.topk(probs, 5)
        np.testing.assert_allclose(rec.guess_probs[i - 1], top.values.numpy(), atol=1e-5)
        assert rec.guess_ids[i - 1].tolist() == top.indices.tolist()


@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_transformer_mlp_units_equal_one_token_steps(positions: str) -> None:
    text = quoted_text(30, seed=4)  # longer than the context of 8
    tokenizer = CharTokenizer.build(text)
    torch.manual_seed(0)
    config = ModelConfig(
        family="transformer",
        vocab_size=tokenizer.vocab_size,
        embed_dim=16,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        context_size=8,
        positions=positions,
    )
    model = build_model(config).eval()
    rec = record(model, tokenizer, text)
    assert [(g.layer, g.kind, g.width) for g in rec.groups] == [(0, "mlp", 64), (1, "mlp", 64)]

    seen: list[list[torch.Tensor]] = [[], []]
    hooks = [
        block.fc.register_forward_hook(lambda _m, _i, out, k=k: seen[k].append(out[0, -1]))
        for k, block in enumerate(model.blocks)
    ]
    ids = [start_token(tokenizer), *tokenizer.encode(text).tolist()]
    state = None
    expected_probs = []
    with torch.inference_mode():
        for token in ids:
            logits, state = model(torch.tensor([[token]]), state)
            expected_probs.append(torch.softmax(logits[0, -1], -1))
    for hook in hooks:
        hook.remove()
    for k in range(2):
        expected = F.gelu(torch.stack(seen[k][1:])).numpy()
        np.testing.assert_allclose(rec.activations[:, k * 64 : (k + 1) * 64], expected, atol=1e-5)
    top = torch.topk(torch.stack(expected_probs[1:]), 5)
    np.testing.assert_allclose(rec.guess_probs, top.values.numpy(), atol=1e-5)


def test_planted_quote_cell_is_ranked_first() -> None:
    tokenizer = CharTokenizer(sorted(ALPHABET))
    model = planted_model(tokenizer)
    text = quoted_text(3000, seed=1)
    rec = record(model, tokenizer, text)
    cell = rec.activations[:, rec.column(0, "cell", PLANTED)]
    inside = BUILTIN["in_double_quotes"](text) > 0
    assert cell[inside].min() > 0.8 and cell[~inside].max() < 0.1  # the plant works
    names, matrix = feature_matrix(text_features(rec.text))
    r = correlations(matrix, rec.activations)
    ranking = rank_units(r, names, rec, 3, constant_features(matrix))
    quotes = [item for item in ranking if item["feature"] == "in_double_quotes"]
    assert (quotes[0]["layer"], quotes[0]["kind"], quotes[0]["unit"]) == (0, "cell", PLANTED)
    assert quotes[0]["r"] > 0.95
    assert abs(quotes[1]["r"]) < quotes[0]["r"]


# --------------------------------------------------------------------------- correlations
def test_correlations_agree_with_numpy_corrcoef() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    features = np.stack(
        [
            rng.normal(size=n),
            rng.random(n) < 0.2,  # a 0/1 feature
            np.cumsum(rng.random(n) < 0.05),  # a slowly growing count
            np.full(n, 4.0),  # constant: r = 0
        ],
        axis=1,
    ).astype(np.float32)
    units = rng.normal(size=(n, 700)).astype(np.float32)  # more than one block of units
    units[:, :50] += 3 * features[:, :1]
    units[:, 60] = 7.0  # a dead unit
    units[:, 61] = 1e3 + 1e-2 * units[:, 61]  # far from zero, small spread
    r = correlations(features, units)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.corrcoef(features.T.astype(np.float64), units.T.astype(np.float64))[:4, 4:]
    expected[np.isnan(expected)] = 0.0
    np.testing.assert_allclose(r, expected, atol=1e-5)
    assert r[3].tolist() == [0.0] * 700 and r[:, 60].tolist() == [0.0] * 4


def test_quantised_values_keep_each_units_own_range() -> None:
    rng = np.random.default_rng(1)
    columns = np.stack(
        [
            rng.normal(size=500),  # around zero
            3600 + 40 * rng.normal(size=500),  # a counting cell far from zero
            np.full(500, -2.0),  # constant
        ],
        axis=1,
    ).astype(np.float32)
    q, offset, scale = quantise(columns)
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    back = offset + q.astype(np.float32) * scale
    assert np.all(np.abs(back - columns) <= scale * 0.5 + 1e-3 * np.abs(columns).max(axis=0))
    scales = colour_scales(columns)
    assert scales["centred"].tolist() == [False, True, True]
    assert scales["spread"][1] < 200 < scales["zero"][1]  # the spread, not the distance to 0


# --------------------------------------------------------------------------- features
def brute_features(text: str) -> dict[str, list[float]]:
    """Each built-in feature by walking the text one character at a time."""
    out: dict[str, list[float]] = {name: [] for name in BUILTIN}
    column = 0
    double = single = 0
    depth = {"(": 0, "[": 0, "{": 0}
    closers = {")": "(", "]": "[", "}": "{"}
    indent, leading = 0, True

    def word(ch: str) -> bool:
        return ch.isalnum() or ch == "_"

    for i, ch in enumerate(text):
        line_start = i == 0 or text[i - 1] == "\n"
        if line_start:
            single, indent, leading = 0, 0, True
        out["line_position"].append(column)
        column = 0 if ch == "\n" else column + 1
        if ch == '"':
            double ^= 1
        out["in_double_quotes"].append(double)
        apostrophe = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
        if ch == "'" and not apostrophe:
            single ^= 1
        out["in_single_quotes"].append(single)
        if ch in depth:
            depth[ch] += 1
        elif ch in closers and depth[closers[ch]] > 0:
            depth[closers[ch]] -= 1
        out["round_depth"].append(depth["("])
        out["square_depth"].append(depth["["])
        out["curly_depth"].append(depth["{"])
        out["word_start"].append(word(ch) and not (i > 0 and word(text[i - 1])))
        out["after_newline"].append(line_start)
        out["digit"].append(ch in "0123456789")
        out["upper_case"].append(ch.isupper())
        if leading and ch in " \t":
            indent += 1
        else:
            leading = False
        out["indentation"].append(indent)
    return {name: [float(x) for x in values] for name, values in out.items()}


TEXTS = st.text(alphabet="ab Z9_'\"()[]{}\n\t.É😀", max_size=120)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_features_agree_with_brute_force(text: str) -> None:
    got = text_features(text)
    expected = brute_features(text)
    for name in BUILTIN:
        assert got[name].dtype == np.float32
        assert got[name].tolist() == expected[name], name


@settings(max_examples=150, deadline=None)
@given(TEXTS, st.sampled_from([r"a+", r"\(.*?\)", r"b?", r"[Z9]\w*", r"(?m)^\s+"]))
def test_regex_feature_marks_the_matches(text: str, pattern: str) -> None:
    compiled = re.compile(pattern)
    expected = [0.0] * len(text)
    for match in compiled.finditer(text):
        for i in range(match.start(), match.end()):
            expected[i] = 1.0
    assert regex_feature(text, compiled).tolist() == expected


def test_every_feature_states_its_definition_and_user_features_are_checked() -> None:
    for name in BUILTIN:
        assert len(definition(name)) > 20
    assert parse_feature("vowel=[aeiou]")[0] == "vowel"
    for spec, words in [
        ("vowel", "NAME=REGEX"),
        ("bad=(", "bad regular expression '('"),
        ("digit=x", "built-in"),
        ("9x=a", "a name is"),
        ("empty=", "empty"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            parse_feature(spec)


# --------------------------------------------------------------------------- the command
def test_json_lists_the_top_units_of_each_feature(
    planted_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "text.txt"
    text.write_text(quoted_text(2000, seed=2), encoding="utf-8")
    code = cli_main(
        ["neurons", str(planted_run), str(text), "--json", "--top", "3", "--feature", "o=o+"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    items = json.loads(captured.out)
    assert all(set(item) == {"feature", "layer", "kind", "unit", "r"} for item in items)
    assert all(item["kind"] in ("cell", "hidden") and -1 <= item["r"] <= 1 for item in items)
    features = list(dict.fromkeys(item["feature"] for item in items))
    # no digits, upper case, [ ], { } or single quotes in this text: constant, left out
    absent = ["in_single_quotes", "square_depth", "curly_depth", "digit", "upper_case"]
    absent.append("indentation")
    assert features == [name for name in BUILTIN if name not in absent] + ["o"]
    assert "constant over this text" in captured.err and "digit" in captured.err
    for name in features:
        rs = [abs(item["r"]) for item in items if item["feature"] == name]
        assert len(rs) == 3 and rs == sorted(rs, reverse=True)
    first = next(item for item in items if item["feature"] == "in_double_quotes")
    assert (first["layer"], first["kind"], first["unit"]) == (0, "cell", PLANTED)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chargen: error:") and words in err, err


def test_user_errors_are_one_line(
    planted_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "text.txt"
    text.write_text('ab "cd" (ef)\n', encoding="utf-8")
    run = str(planted_run)
    one_line_error(capsys, ["neurons", run, str(text), "--feature", "x=[a"], "--feature x")
    one_line_error(capsys, ["neurons", run, str(text), "--top", "0"], "--top")
    one_line_error(
        capsys, ["neurons", run, str(text), "--units", "0:mlp:1"], "kind cell and hidden"
    )
    one_line_error(capsys, ["neurons", run, str(text), "--units", "2:cell:1"], "2 layer(s)")
    one_line_error(capsys, ["neurons", run, str(text), "--units", "0:cell:8"], "numbered 0 to 7")
    one_line_error(capsys, ["neurons", run, str(text), "--units", "zero"], "LAYER:KIND:UNIT")
    nowhere = str(tmp_path / "no" / "page.html")
    one_line_error(capsys, ["neurons", run, str(text), "--html", nowhere], "cannot write")
    unknown = tmp_path / "unknown.txt"
    unknown.write_text('ab "Q" cd\n', encoding="utf-8")
    one_line_error(capsys, ["neurons", run, str(unknown), "--unknown", "error"], "'Q'")
    assert cli_main(["neurons", run, str(unknown), "--unknown", "drop", "--json"]) == 0
    assert "Q" not in capsys.readouterr().err


def test_units_that_do_not_fit_the_budget_are_chosen(planted_run: Path) -> None:
    tokenizer = CharTokenizer(sorted(ALPHABET))
    model = planted_model(tokenizer)
    rec = record(model, tokenizer, quoted_text(1000))
    names, matrix = feature_matrix(text_features(rec.text))
    r = correlations(matrix, rec.activations)
    ranking = rank_units(r, names, rec, 1, constant_features(matrix))
    everything, why = choose_units(r, ranking, rec, [], 1000 * rec.units)
    assert everything == list(range(rec.units)) and why == f"all {rec.units} units"
    asked = rec.column(1, "hidden", 7)
    chosen, why = choose_units(r, ranking, rec, [asked], 1000 * 12)
    ranked = {rec.column(i["layer"], i["kind"], i["unit"]) for i in ranking}
    assert len(chosen) == 12 and asked in chosen and ranked <= set(chosen)
    assert "12 of 32 units" in why and "--units" in why


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(ABSENT)
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def write_page(run: Path, tmp_path: Path, text: str, name: str) -> Path:
    source, page = tmp_path / f"{name}.txt", tmp_path / f"{name}.html"
    source.write_text(text, encoding="utf-8")
    assert cli_main(["neurons", str(run), str(source), "--html", str(page)]) == 0
    return page


def backgrounds(page, count: int) -> list[str]:
    return page.eval_on_selector_all(
        "#rows .t span[data-i]", f"s => s.slice(0, {count}).map(e => e.style.background)"
    )


def test_page_picker_recolours_and_a_span_finds_its_unit(
    browser, planted_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = quoted_text(900, seed=5)
    path = write_page(planted_run, tmp_path, text, "small")
    assert "holding all 32 units" in capsys.readouterr().err
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    page.uncheck("#guesses")  # more rows in view

    planted = page.eval_on_selector_all(
        "#unit option", f"os => os.find(o => o.textContent === 'layer 0 cell {PLANTED}').value"
    )
    other = page.eval_on_selector_all(
        "#unit option", "os => os.find(o => o.textContent === 'layer 1 hidden 0').value"
    )
    page.select_option("#unit", planted)
    before = backgrounds(page, 200)
    # a page written by the CLI gives the --clamp command line; only a served page writes
    assert page.is_hidden("#hold-served")
    command = page.inner_text("#hold-command")
    assert command.startswith(f"chargen generate {planted_run} --clamp 0:cell:{PLANTED}=")
    page.select_option("#unit", other)
    after = backgrounds(page, 200)
    assert len(before) == 200 and before != after
    assert page.get_attribute("body", "data-unit") == other
    assert f"layer 0 cell {PLANTED}" in page.inner_text("#found")

    spans = quoted_spans(text)
    a, b = spans[0]  # select from the opening quote to the last character inside
    start = page.locator(f'#rows span[data-i="{a}"]').bounding_box()
    end = page.locator(f'#rows span[data-i="{b - 1}"]').bounding_box()
    page.mouse.move(start["x"] + 2, start["y"] + 5)
    page.mouse.down()
    page.mouse.move(end["x"] + 2, end["y"] + 5, steps=4)
    page.mouse.up()
    page.wait_for_selector("#candidates")
    label = f"layer 0 cell {PLANTED}"
    assert label in page.inner_text("#candidates")
    for box in page.locator("#candidates li").all():  # match on the planted cell alone
        box.locator("input").set_checked(label in box.inner_text())
    others = spans[1:]
    if text.count('"') % 2:  # the text ends inside a quote
        others.append((text.rindex('"'), len(text)))
    page.wait_for_function(f"document.body.dataset.matches === '{len(others)}'")
    page.click("#matches .jump")
    assert page.locator("#rows .t span.match").count() > 0
    marked = page.eval_on_selector_all(
        "#rows .t span.match", "s => s.map(e => Number(e.dataset.i))"
    )
    inside = {i for s, e in others for i in range(s, e)}
    assert set(marked) <= inside
    assert not errors
    assert all(url.startswith("file://") for url in requested)  # nothing from the network
    page.close()


def test_page_renders_only_what_is_in_view_of_100k_characters(
    browser, planted_run: Path, tmp_path: Path
) -> None:
    text = quoted_text(100_000, seed=6)
    path = write_page(planted_run, tmp_path, text, "long")
    page = browser.new_page(viewport={"width": 420, "height": 900})
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#rows .t span").count() < 2000
    page.eval_on_selector("#viewer", "v => { v.scrollTop = v.scrollHeight; }")
    page.wait_for_selector(f'#rows span[data-i="{len(text) - 1}"]')
    assert page.locator("#rows .t span").count() < 2000
    page.close()
