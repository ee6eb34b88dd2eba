"""``chargen export RUN --web DIR`` (issue #20, item 2): a static site that generates in the browser.

The site, served by Python's static file server on 127.0.0.1, runs in Debian's Chromium with
every request outside that server aborted (and none is made): for seeds 1, 3 and 7 at T = 0.8
its text equals ``chargen generate``'s, for a character LSTM, a word-level Transformer and a
BPE GRU; its sampler's uniforms are rng.py's bit for bit and its log-probabilities chargen's;
its word pattern splits every assigned code point as Python's ``re`` does; the page reflows at
420 px. A missing onnxruntime-web is a one-line error.

onnxruntime-web (the npm package) comes from ``$CHARGEN_ORT_DIR`` (``.ci/run`` installs it and
sets it), else ``~/.cache/chargen-ort`` (``npm install --prefix ~/.cache/chargen-ort
onnxruntime-web@1.30.0``), ``./node_modules`` or the global npm root: without one these tests
skip, saying how to install it, and CI (``CHARGEN_STRICT=1``) fails instead. Screenshots at 1400 and
420 px go to ``$CHARGEN_SCREENSHOTS`` (else a pytest temporary folder).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from chargen.cli import main as cli_main
from tests.browser import ABSENT, CHROMIUM, CHROMIUM_ARGS
from tests.conftest import TINY_FLAGS, make_text

ORT_VERSION = "1.30.0"  # what .ci/run installs
ORT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chargen-ort"
INSTALL_HINT = (
    f"npm install --prefix {ORT_CACHE} onnxruntime-web@{ORT_VERSION} (found there, or set "
    "CHARGEN_ORT_DIR to an onnxruntime-web/dist folder; .ci/run does both)"
)

TRANSFORMER = ["--model", "transformer", "--hidden-size", "32", "--num-heads", "2"]
TRANSFORMER += ["--layers", "2", "--context-size", "16", "--seq-len", "16"]
RUNS = {  # name: (training flags after TINY_FLAGS, prompt)
    "lstm_char": (["--steps", "40"], "the "),
    "transformer_word": (["--steps", "12", *TRANSFORMER, "--tokenizer", "word"], "the cat"),
    "gru_bpe": (
        ["--steps", "12", "--model", "gru", "--tokenizer", "bpe", "--max-vocab", "60"],
        "a dog",
    ),
}
SEEDS = (1, 3, 7)
LENGTH = 200
DONE = "document.getElementById('status').textContent.startsWith('done')"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ort_dir() -> Path:
    """The onnxruntime-web dist folder: $CHARGEN_ORT_DIR, else the cache folder .ci/run and
    the hint install into, else where the CLI looks. None: a skip saying how to install it,
    which CI (CHARGEN_STRICT=1, tests/conftest.py) turns into a failure."""
    from chargen.errors import ConfigError
    from chargen.export_web import find_ort_dist

    given = os.environ.get("CHARGEN_ORT_DIR")
    try:
        if given:
            return find_ort_dist(given).path
        cached = ORT_CACHE / "node_modules" / "onnxruntime-web" / "dist"
        return find_ort_dist(cached if cached.is_dir() else None).path
    except ConfigError as exc:
        said = f"CHARGEN_ORT_DIR={given}: {exc}" if given else "onnxruntime-web is not installed"
        pytest.skip(f"{said}; {INSTALL_HINT}")


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, ort_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Tiny trained runs, each with its site: name -> (run, site)."""
    folder = tmp_path_factory.mktemp("web")
    corpus = folder / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = {}
    for name, (flags, _) in RUNS.items():
        run, site = folder / name, folder / f"{name}-site"
        args = ["train", str(corpus), "--out", str(run), *TINY_FLAGS, *flags]
        assert cli_main(args) == 0, name
        assert cli_main(["export", str(run), "--web", str(site), "--ort-dir", str(ort_dir)]) == 0
        out[name] = (run, site)
    return out


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """Python's static file server on 127.0.0.1 for ``folder``, in a thread; yields its URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(ABSENT)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def opened(chromium: Any, site: Path, width: int = 1400) -> Iterator[Any]:
    """The site's page, served locally and ready; only the server's own URLs may load
    (``page.aborted`` lists any other request, ``page.errors`` the page's errors)."""
    with static_server(site) as url:
        page = chromium.new_page(viewport={"width": width, "height": 1000})
        page.aborted, page.errors = [], []

        def route(request_route: Any) -> None:
            if request_route.request.url.startswith(url + "/"):
                request_route.continue_()
            else:
                page.aborted.append(request_route.request.url)
                request_route.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        try:
            yield page
        finally:
            page.close()


def page_generate(
    page: Any, prompt: str, seed: int | str, temperature: str = "0.8", **more: str
) -> str:
    page.fill("#prompt", prompt)
    page.fill("#temperature", temperature)
    page.fill("#length", str(more.pop("length", LENGTH)))
    page.fill("#seed", str(seed))
    for field, value in more.items():
        page.fill(f"#{field.replace('_', '-')}", value)
    page.click("#generate")
    page.wait_for_function(DONE, timeout=60_000)
    return page.text_content("#output")


def chargen_text(
    capsys: pytest.CaptureFixture[str], run: Path, prompt: str, seed: int, *flags: str
) -> str:
    """What ``chargen generate`` prints after the prompt, for one seed."""
    capsys.readouterr()
    args = ["generate", str(run), "--seed", str(seed), "--prompt", prompt, *flags]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(prompt) and out.endswith("\n")
    return out[len(prompt) : -1]


def one_line_error(capsys: pytest.CaptureFixture[str], *args: Any) -> str:
    capsys.readouterr()
    code = cli_main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("chargen: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------ the page
@pytest.mark.parametrize("name", list(RUNS))
def test_the_page_writes_what_chargen_generate_writes(sites, chromium, capsys, name) -> None:
    run, site = sites[name]
    prompt = RUNS[name][1]
    with opened(chromium, site) as page:
        for seed in SEEDS:
            got = page_generate(page, prompt, seed)
            want = chargen_text(
                capsys, run, prompt, seed, "--temperature", "0.8", "--length", str(LENGTH)
            )
            assert got == want, f"seed {seed}"
            assert page.text_content("#prompt-echo") == prompt
            assert page.text_content("#used-seed") == f"seed {seed}"
        # one coloured span per token, titled in bits, on the playground's scale
        spans = page.locator("#output span")
        assert spans.count() == LENGTH
        assert "background" in (spans.first.get_attribute("style") or "")
        assert "bits" in (spans.first.get_attribute("title") or "")
        per = "character" if name == "lstm_char" else "token"
        assert f"bits per {per}" in page.text_content("#legend")
        assert page.locator("#legend .swatch").count() == 6
        assert page.errors == [] and page.aborted == []


def test_sampling_settings_and_extreme_seeds_match_chargen(sites, chromium, capsys) -> None:
    """Top-k, top-p, min-p, greedy, T = 1 and seeds past 2**63 or below 0 draw chargen's text."""
    run, site = sites["lstm_char"]
    cases = [
        ("1", {}, 5),
        ("0", {}, 5),
        ("1.3", {"top_k": "5"}, 2),
        ("0.9", {"top_p": "0.8"}, 2),
        ("1", {"min_p": "0.1"}, 2),
        ("1.5", {"top_k": "10", "top_p": "0.9", "min_p": "0.05"}, 4),
        ("0.8", {}, 2**64 - 1),
        ("0.8", {}, -5),
    ]
    flags = {"top_k": "--top-k", "top_p": "--top-p", "min_p": "--min-p"}
    with opened(chromium, site) as page:
        page.click("#more summary")
        for temperature, settings, seed in cases:
            for field in flags:
                page.fill(f"#{field.replace('_', '-')}", settings.get(field, ""))
            got = page_generate(page, "the ", seed, temperature, length=300)
            extra = [x for f, v in settings.items() for x in (flags[f], v)]
            want = chargen_text(
                capsys, run, "the ", seed, "--temperature", temperature, "--length", "300", *extra
            )
            assert got == want, (temperature, settings, seed)
        assert page.errors == [] and page.aborted == []


def test_an_int8_site_runs_in_the_wasm_backend(sites, chromium, capsys, ort_dir, tmp_path) -> None:
    """--web with --quantize int8 (and --onnx: both written, the same graph): onnxruntime-web
    runs the int8 graph and the page writes what --engine onnx writes with it."""
    run = sites["lstm_char"][0]
    site, graph = tmp_path / "site", tmp_path / "int8.onnx"
    args = ["export", run, "--web", site, "--ort-dir", ort_dir, "--quantize", "int8"]
    assert cli_main([str(a) for a in [*args, "--onnx", graph]]) == 0
    assert (site / "model.onnx").read_bytes() == graph.read_bytes()
    config = json.loads((site / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["quantize"] == "int8"
    with opened(chromium, site) as page:
        assert "int8" in page.text_content("#model-facts")
        for seed in (1, 2):
            got = page_generate(page, "the ", seed, length=300)
            want = chargen_text(
                capsys, run, "the ", seed, "--temperature", "0.8", "--length", "300",
                "--engine", "onnx", "--onnx-model", str(graph),
            )  # fmt: skip
            assert got == want, f"seed {seed}"
        assert page.errors == [] and page.aborted == []


def test_the_sampler_is_chargens_arithmetic(sites, chromium) -> None:
    """sampler.js: rng.uniforms bit for bit; log-probabilities within float32 rounding of the
    chain's, and the same draws."""
    from chargen.chain import SamplingChain
    from chargen.rng import uniforms
    from chargen.sampling import SamplingConfig, select_next

    seeds = [0, 1, 7, 2**32 + 5, 2**63, 2**64 - 1, -1, -(2**63), 12345678901234567890]
    steps = [0, 1, 2, 199, 2**31, 2**53 + 1]
    want = [[float(uniforms([s], t)[0]) for t in steps] for s in seeds]
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 300)) * 3).astype(np.float32)
    configs = [
        SamplingConfig(temperature=0.8),
        SamplingConfig(temperature=1.0),
        SamplingConfig(temperature=1.7, top_k=20),
        SamplingConfig(temperature=0.7, top_p=0.9),
        SamplingConfig(temperature=1.2, min_p=0.05),
        SamplingConfig(temperature=0.9, top_k=50, top_p=0.95, min_p=0.02),
    ]
    us = rng.random(40).tolist()
    script = """async ([seeds, steps, logits, configs, us]) => {
      const s = await import('./sampler.js');
      const u = seeds.map((seed) => { const g = new s.Uniforms(BigInt(seed));
        return steps.map((t) => g.at(BigInt(t))); });
      const lp = configs.map((c, i) => Array.from(s.logprobs(Float32Array.from(logits[i]), c)));
      const picks = lp.map((row) => us.map((x) => s.draw(Float64Array.from(row), x).id));
      return [u, lp, picks];
    }"""
    js_configs = [
        {"temperature": c.temperature, "topK": c.top_k, "topP": c.top_p, "minP": c.min_p}
        for c in configs
    ]
    with opened(chromium, sites["lstm_char"][1]) as page:
        got_u, got_lp, got_picks = page.evaluate(
            script,
            [[str(s) for s in seeds], [str(t) for t in steps], logits.tolist(), js_configs, us],
        )
    assert got_u == want  # exact: the same 53-bit integers times 2**-53
    history = torch.zeros((1, 1), dtype=torch.long)
    for row, cfg in enumerate(configs):
        expected = SamplingChain(cfg).logprobs(torch.from_numpy(logits[row : row + 1]), history)
        got = torch.tensor([[v if v is not None else -np.inf for v in got_lp[row]]])
        assert torch.equal(torch.isinf(got), torch.isinf(expected)), cfg
        finite = ~torch.isinf(expected)
        assert torch.allclose(got[finite].float(), expected[finite], rtol=0, atol=1e-6), cfg
        picks = [int(select_next(expected, torch.tensor([u]))[0]) for u in us]
        assert got_picks[row] == picks, cfg


def test_the_word_pattern_splits_as_pythons_re(sites, chromium) -> None:
    """tokenizer.js's \\w / \\s classes equal Python's on every code point Python assigns."""
    import unicodedata

    from chargen.tokenizer import WORD_PATTERN

    chars = [
        chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs")
    ]

    def kind(ch: str) -> str:
        if len(WORD_PATTERN.findall("a" + ch)) == 1:
            return "w"
        return "s" if len(WORD_PATTERN.findall(" " + ch)) == 1 else "o"

    script = """async (chars) => {
      const { WORD_PATTERN } = await import('./tokenizer.js');
      const n = (text) => text.match(WORD_PATTERN).length;
      return chars.map((c) => (n('a' + c) === 1 ? 'w' : n(' ' + c) === 1 ? 's' : 'o')).join('');
    }"""
    with opened(chromium, sites["transformer_word"][1]) as page:
        got = page.evaluate(script, chars)
        text = "The cat's 3 dogs\t\u00a0ran  — fast!\n\nÉté: 42€, naïve_café\u2028ok"
        pieces = page.evaluate(
            "async (t) => t.match((await import('./tokenizer.js')).WORD_PATTERN)", text
        )
    want = "".join(map(kind, chars))
    wrong = [f"U+{ord(c):04X}" for c, g, w in zip(chars, got, want, strict=True) if g != w]
    assert not wrong, f"{len(wrong)} code points split differently: {wrong[:20]}"
    assert pieces == WORD_PATTERN.findall(text)


def test_the_page_reads_well_at_1400_and_420_px(sites, chromium, tmp_path_factory, request) -> None:
    chosen = os.environ.get("CHARGEN_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("web-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    site = sites["lstm_char"][1]
    for width in (1400, 420):
        with opened(chromium, site, width) as page:
            ids = ("prompt", "temperature", "length", "seed", "generate", "output")
            assert all(page.locator(f"#{i}").count() == 1 for i in ids)
            unlabelled = page.evaluate(
                "[...document.querySelectorAll('input, textarea')]"
                ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
                ".map(e => e.id)"
            )
            assert unlabelled == []
            assert page.input_value("#prompt")  # the run's seed text
            page_generate(page, page.input_value("#prompt"), 5, length=300)
            widths = page.evaluate(
                "({doc: document.documentElement.scrollWidth, view: window.innerWidth})"
            )
            assert widths["doc"] <= widths["view"] == width
            page.screenshot(path=str(folder / f"web-{width}.png"), full_page=True)
            page.uncheck("#colour")  # the colouring has an off switch
            assert not page.is_visible("#legend")
            assert page.errors == [] and page.aborted == []
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\nweb page screenshots in {folder}", flush=True)


# ------------------------------------------------------------------------------ the folder
def test_the_site_holds_the_wasm_backend_only(sites, capsys, ort_dir, tmp_path) -> None:
    run, site = sites["lstm_char"]
    names = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert names == sorted(
        [
            "app.js", "config.json", "favicon.svg", "index.html", "model.onnx", "sampler.js",
            "style.css", "tokenizer.js", "vocab.json", "ort/ort.wasm.min.mjs",
            "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm",
        ]
    )  # fmt: skip
    config = json.loads((site / "config.json").read_text(encoding="utf-8"))
    assert config["format"] == "chargen-web-1"
    assert [p["name"] for p in config["state"]] == ["h", "c"]
    assert config["per"] == "character" and config["val_bits_per_char"] > 0
    vocab = json.loads((site / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["kind"] == "char" and len(vocab["vocab"]) == config["vocab_size"]
    for text in ("index.html", "app.js"):  # nothing from elsewhere
        assert "cdn" not in (site / text).read_text(encoding="utf-8").lower()
    # writing again replaces the site and says how large it is
    capsys.readouterr()
    assert cli_main(["export", str(run), "--web", str(site), "--ort-dir", str(ort_dir)]) == 0
    err = capsys.readouterr().err
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert f"a static site of {total / 1e6:.1f} MB" in err and "onnxruntime-web" in err
    assert "http.server" in err


def test_a_missing_onnxruntime_web_is_one_line(trained_run, tmp_path, capsys, monkeypatch) -> None:
    import chargen.export_web as export_web

    monkeypatch.chdir(tmp_path)  # no ./node_modules here
    monkeypatch.setattr(export_web, "_npm_root_global", lambda: tmp_path / "global")
    site = tmp_path / "site"
    line = one_line_error(capsys, "export", trained_run, "--web", site)
    assert "npm install onnxruntime-web" in line and "--ort-dir" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(capsys, "export", trained_run, "--web", site, "--ort-dir", empty)
    assert "ort.wasm.min.mjs" in line and "npm install onnxruntime-web" in line
    assert not site.exists()
    assert "goes with --web" in one_line_error(capsys, "export", trained_run, "--ort-dir", empty)


def test_the_site_folder_must_be_new_empty_or_a_site(
    trained_run, tmp_path, capsys, ort_dir
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    line = one_line_error(capsys, "export", trained_run, "--web", busy, "--ort-dir", ort_dir)
    assert "other files" in line
    assert (busy / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a folder" in one_line_error(
        capsys, "export", trained_run, "--web", a_file, "--ort-dir", ort_dir
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert (
        cli_main(["export", str(trained_run), "--web", str(empty), "--ort-dir", str(ort_dir)]) == 0
    )
    assert (empty / "index.html").is_file() and not (trained_run / "model.onnx").exists()
