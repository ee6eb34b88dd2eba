"""End to end in headless Chromium: the page opens on the run's seed text, generates (a fresh
seed per click, shown, and reproducing its text when kept), keeps warnings in view, colours by
surprisal with a toggle, shows the alternatives the model weighed at every generated character
(before and after the sampling rules, equal to /v1/distribution's) and the sampler X-ray,
streams several temperatures side by side (each column what /v1/generate gives), lets one write
with the model (pick, undo, continue, download), keeps every setting in its URL, reflows at
420 px, and ``/docs`` renders with the network blocked.

Screenshots at 1400 and 420 px go to ``$CHARGEN_SCREENSHOTS`` (else a pytest temporary folder);
the folder is printed past pytest's capture, so a CI log names it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import ABSENT, CHROMIUM, CHROMIUM_ARGS

pytest.importorskip("fastapi", reason="the serve extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(
        ABSENT,
        allow_module_level=True,
    )

from tests.serving import running_server  # noqa: E402

GENERATED = (
    "[...document.querySelectorAll('#output span:not(.prompt)')].map(s => s.textContent).join('')"
)
DONE = "document.getElementById('status').textContent.startsWith('done')"


@pytest.fixture(scope="module")
def screenshots(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """The folder for screenshots, named on the terminal (past pytest's capture) at the end."""
    chosen = os.environ.get("CHARGEN_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    taken = sorted(p.name for p in folder.glob("*.png"))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and taken:
        with capture.global_and_fixture_disabled():
            print(f"\nplayground screenshots in {folder}: {', '.join(taken)}", flush=True)


def _generate(page, how: str = "click") -> tuple[str, str]:
    """One generation; (the seed shown beside the text, the generated text)."""
    if how == "click":
        page.click("#generate")
    else:  # the keyboard: Ctrl+Enter from the prompt
        page.focus("#prompt")
        page.keyboard.press("Control+Enter")
    page.wait_for_function(DONE, timeout=60_000)
    shown = page.inner_text("#used-seed")
    assert shown.startswith("seed ")
    seed = shown.removeprefix("seed ")
    assert page.input_value("#seed") == seed
    return seed, page.evaluate(GENERATED)


def _fits_420(page) -> None:
    """Nothing wider than a 420 px screen: the document, its canvases, the inspector."""
    widths = page.evaluate(
        "({doc: document.documentElement.scrollWidth, view: window.innerWidth,"
        " boxes: [...document.querySelectorAll('canvas, #inspector:not([hidden]), .column')]"
        ".map(c => c.getBoundingClientRect().right)})"
    )
    assert widths["doc"] <= widths["view"] == 420
    assert all(right <= 420 for right in widths["boxes"])


def _open(pw, url: str, width: int = 1400, query: str = ""):
    """A browser and its page on the playground, ready; errors the page raises are collected."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": 1000}, accept_downloads=True)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url + "/" + query)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return browser, page


def _span(page, text: str, near: int) -> str:
    """A selector for a generated token of ``text`` (a selector) at ``near`` or after it that
    has a box to point at (a newline has none)."""
    i = page.evaluate(
        f'[...document.querySelectorAll("{text} span[data-i]")]'
        f".findIndex((s, k) => k >= {near} && s.textContent.trim() !== '')"
    )
    assert i >= 0
    return f"{text} span[data-i='{i}']"


def _rows(page, figure: str) -> list[tuple[str, float]]:
    """(token, p) of each row of a bar chart, in order."""
    return page.evaluate(
        f"[...document.querySelectorAll('{figure} tbody tr')]"
        ".map(r => [r.dataset.token, parseFloat(r.dataset.p)])"
    )


def test_playground_in_a_browser(trained_run: Path, screenshots: Path) -> None:
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requested: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.locator("#curves-caption").inner_text().startswith("last validation")
        assert "bits/char" in page.inner_text("#curves-caption")
        # every control has a label
        unlabelled = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), textarea, select')]"
            ".filter(e => !e.labels || !e.labels.length).map(e => e.id)"
        )
        assert unlabelled == []

        # the default prompt is the run's seed text: a window of its corpus, nothing dropped
        info = page.evaluate("fetch('/v1/model').then(r => r.json())")
        assert info["seed_text"] and page.input_value("#prompt") == info["seed_text"]
        assert info["units"] == {"surprisal": "bits", "per": "character"}
        page.fill("#length", "120")
        _, text = _generate(page)
        assert page.inner_text("#warnings") == ""

        # a fresh seed each click; the seed shown reproduces each text when kept
        seed_a, text_a = _generate(page)
        seed_b, text_b = _generate(page, how="keyboard")
        assert seed_a != seed_b and text_a != text_b
        assert len(text_a) == 120 and len(text_b) == 120  # one character per token here
        for seed, expected in ((seed_a, text_a), (seed_b, text_b)):
            page.fill("#seed", seed)  # typing a seed keeps it
            assert page.is_checked("#seed-lock")
            assert _generate(page) == (seed, expected)
        page.uncheck("#seed-lock")
        assert _generate(page)[0] not in (seed_a, seed_b)

        # coloured by surprisal in bits, on the scale score --html uses; a toggle turns it off
        spans = page.locator("#output span:not(.prompt)")
        assert spans.count() == 120
        assert "background" in (spans.first.get_attribute("style") or "")
        assert "bits" in (spans.first.get_attribute("title") or "")
        assert "nats" not in (spans.first.get_attribute("title") or "")
        assert "bits per character" in page.inner_text("#legend")
        assert page.locator("#legend .swatch").count() == len(info["surprisal_scale"]["bins"])
        page.uncheck("#colour-toggle")
        assert spans.first.evaluate("s => getComputedStyle(s).backgroundColor") in (
            "rgba(0, 0, 0, 0)",
            "transparent",
        )
        assert not page.is_visible("#legend")
        page.check("#colour-toggle")

        # a warning (the capital T is not in the lower-case corpus) stays until the next request
        page.fill("#prompt", "The cat ")
        page.fill("#length", "60")
        _generate(page)
        assert "warning" in page.inner_text("#warnings")
        page.wait_for_timeout(300)
        assert "warning" in page.inner_text("#warnings")  # not overwritten by "done"
        page.fill("#prompt", "the cat ")
        _generate(page)
        assert page.inner_text("#warnings") == ""
        # an error from the server is shown too
        page.fill("#length", "999999")
        page.click("#generate")
        page.wait_for_function(
            "document.getElementById('warnings').textContent.includes('length')", timeout=30_000
        )
        assert "error" in page.inner_text("#warnings")
        page.fill("#length", "120")
        _generate(page)

        # the sampler X-ray: the temperature's step sharpens (T < 1) or flattens the model's
        page.fill("#temperature", "0.2")
        page.wait_for_selector("#xray figure[data-label='temperature 0.2']")
        model = float(page.get_attribute("#xray figure[data-label='model']", "data-entropy"))
        cold = float(
            page.get_attribute("#xray figure[data-label='temperature 0.2']", "data-entropy")
        )
        assert cold < model
        assert page.inner_text("#temperature-value") == "0.20"
        page.fill("#temperature", "1.8")
        page.wait_for_selector("#xray figure[data-label='temperature 1.8']")
        hot = float(
            page.get_attribute("#xray figure[data-label='temperature 1.8']", "data-entropy")
        )
        assert hot > model
        # the picture of the README: a few rules on, a character inspected
        page.fill("#temperature", "0.8")
        page.fill("#top_k", "10")
        page.wait_for_selector("#xray figure[data-label='top k 10']")
        _generate(page)
        page.hover(_span(page, "#output", 30))
        page.wait_for_selector("#xray figure[data-label='top k 10'] tr.chosen")
        page.wait_for_selector("#inspector-after tr.chosen")
        page.screenshot(path=str(screenshots / "playground-1400.png"), full_page=True)

        # a phone: one column, nothing wider than the screen, canvases within their boxes
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)  # the resize observer redraws on the next frame
        _fits_420(page)
        page.hover(_span(page, "#output", 3))
        page.wait_for_selector("#inspector-after tr.chosen")
        _fits_420(page)  # the inspector too
        page.screenshot(path=str(screenshots / "playground-420.png"), full_page=True)
        browser.close()
    assert not errors
    assert requested and all(r.startswith(url) for r in requested)  # nothing from outside


def test_the_alternatives_at_every_character(trained_run: Path) -> None:
    """Hovering, clicking or focusing a generated character shows the top 10 the model weighed
    there, before (T = 1: /v1/distribution's own values) and after the rules (what it was
    drawn from), and the charts below follow it, rule by rule."""
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url)
        page.fill("#prompt", "the dog ")
        page.fill("#length", "40")
        page.fill("#top_k", "3")
        page.fill("#temperature", "0.7")
        _generate(page)
        pieces = page.evaluate(
            "[...document.querySelectorAll('#output span[data-i]')].map(s => s.textContent)"
        )
        assert len(pieces) == 40
        visible = [i for i, piece in enumerate(pieces) if piece.strip()]  # a newline has no box
        for i in (visible[0], visible[len(visible) // 2], visible[-1]):
            page.hover(f"#output span[data-i='{i}']")
            page.wait_for_function(
                f"document.querySelector('#inspector-drawn').textContent.includes('{i + 1} of')"
            )
            page.wait_for_selector("#inspector-before tbody tr")
            assert page.is_visible("#inspector")
            context = "the dog " + "".join(pieces[:i])
            assert page.inner_text("#inspector-title").startswith("Next character after")
            before = _rows(page, "#inspector-before")
            answer = page.request.post(
                url + "/v1/distribution", data={"prompt": context, "temperature": 0.7, "top_k": 3}
            ).json()
            top10 = [
                (t, math.exp(lp))
                for t, lp in zip(answer["tokens"], answer["logprobs"], strict=True)
            ][:10]
            shown = [r for r in before if r[0] in dict(top10)][:10]
            assert [t for t, _ in shown] == [t for t, _ in top10]
            for (_, p_shown), (_, p_server) in zip(shown, top10, strict=True):
                assert p_shown == pytest.approx(p_server, rel=1e-12)
            rest = float(page.get_attribute("#inspector-before", "data-rest"))
            assert sum(p for _, p in before) <= 1 + 1e-9
            assert sum(p for _, p in before) + rest == pytest.approx(1, abs=1e-9)
            # after the rules (top-k 3): at most 3 kept, the drawn one among them, highlighted
            after = _rows(page, "#inspector-after")
            assert 1 <= len(after) <= 3 and sum(p for _, p in after) <= 1 + 1e-6  # float32
            assert page.get_attribute("#inspector-after tr.chosen", "data-token") == pieces[i]
            last = answer["stages"][-1]
            assert [t for t, _ in after] == last["tokens"][:3]
            # the charts below follow the character: the model, then each rule in turn
            page.wait_for_function(
                "document.body.dataset.sectionContext === " + json.dumps(context)
            )
            labels = page.evaluate(
                "[...document.querySelectorAll('#xray figure')].map(f => f.dataset.label)"
            )
            assert labels == [s["label"] for s in answer["stages"]]
            assert labels == ["model", "temperature 0.7", "top k 3"]
            assert "at character" in page.inner_text("#charts-where")
        # leaving the text closes it; a click keeps it open; Escape closes it
        page.mouse.move(5, 5)
        page.wait_for_selector("#inspector", state="hidden")
        page.click(f"#output span[data-i='{visible[1]}']")
        page.mouse.move(5, 5)
        page.wait_for_timeout(200)
        assert page.is_visible("#inspector")
        page.keyboard.press("Escape")
        page.wait_for_selector("#inspector", state="hidden")
        # the keyboard: focus the text, then the arrows walk through its characters
        page.focus("#prompt")
        page.focus("#output")
        page.wait_for_function(
            "document.querySelector('#inspector-drawn').textContent.includes('1 of')"
        )
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "document.querySelector('#inspector-drawn').textContent.includes('3 of')"
        )
        assert page.get_attribute("#output span.current", "data-i") == "2"
        page.keyboard.press("End")
        page.wait_for_function(
            "document.querySelector('#inspector-drawn').textContent.includes('40 of')"
        )
        browser.close()
    assert not page.errors


def test_temperatures_side_by_side(trained_run: Path, screenshots: Path) -> None:
    """One column per temperature, streamed at once with the same seed and prompt; each is what
    /v1/generate gives at its temperature (itself equal to ``chargen generate``)."""
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url)
        page.focus("#tab-generate")  # the modes are tabs: the arrow keys move between them
        page.keyboard.press("ArrowRight")
        assert page.get_attribute("#tab-compare", "aria-selected") == "true"
        assert page.evaluate("document.activeElement.id") == "tab-compare"
        assert page.is_visible("#mode-compare") and not page.is_visible("#mode-generate")
        assert page.input_value("#temps") == "0.2, 0.5, 1.0, 1.2"
        assert "one model step per token" in page.inner_text("#temps-hint")
        page.fill("#temps", "0.2, 0.5, 1.0, 1.2, 0")
        page.fill("#prompt", "a dog ")
        page.fill("#length", "80")
        page.fill("#seed", "2024")
        page.click("#generate")
        page.wait_for_function(
            "document.querySelectorAll('.column[data-done]').length === 5", timeout=60_000
        )
        columns = page.evaluate(
            "[...document.querySelectorAll('.column')].map(c => [c.dataset.temperature,"
            " c.dataset.text, c.querySelector('h3').textContent,"
            " [...c.querySelectorAll('span[data-i]')].map(s => s.textContent).join(''),"
            " c.querySelector('span[data-i]').style.background])"
        )
        assert [c[2] for c in columns] == [
            "T = 0.20",
            "T = 0.50",
            "T = 1.00",
            "T = 1.20",
            "T = 0.00",
        ]
        texts = set()
        for t, text, _, streamed, colour in columns:
            assert text == streamed and len(text) == 80 and colour  # coloured by surprisal
            body = {"prompt": "a dog ", "length": 80, "seed": 2024, "temperature": float(t)}
            expected = page.request.post(url + "/v1/generate", data=body).json()["text"]
            assert text == expected, t
            texts.add(text)
        assert len(texts) > 1  # the temperature tells
        assert "seed 2024" in page.inner_text("#compare-seed")
        # a column's characters can be inspected too, at its own temperature
        page.hover(_span(page, ".column[data-temperature='0.5']", 4))
        page.wait_for_selector("#xray figure[data-label='temperature 0.5']")
        page.screenshot(path=str(screenshots / "side-by-side-1400.png"), full_page=True)
        # at 420 px the columns stack, one under the other
        page.mouse.move(5, 5)
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)
        lefts = page.evaluate(
            "[...document.querySelectorAll('.column')].map(c => c.getBoundingClientRect().left)"
        )
        assert len(set(lefts)) == 1
        _fits_420(page)
        page.screenshot(path=str(screenshots / "side-by-side-420.png"), full_page=True)
        browser.close()
    assert not page.errors


def test_samples_and_beams_side_by_side(trained_run: Path, screenshots: Path) -> None:
    """Columns by seed are ``chargen generate --num-samples N --seed s``; columns by beam are
    ``chargen generate --beams N`` (its texts and scores), best first; the URL keeps the choice."""
    from chargen.checkpoint import load_run
    from chargen.generate import beam_generate, generate
    from chargen.sampling import SamplingConfig

    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url)
        page.click("#tab-compare")
        assert not page.is_visible("#samples")
        page.select_option("#vary", "seed")
        assert page.is_visible("#samples") and not page.is_visible("#temps")
        page.fill("#samples", "3")
        page.fill("#prompt", "the ")
        page.fill("#length", "40")
        page.fill("#top_k", "5")
        page.fill("#seed", "77")
        page.check("#seed-lock")
        page.click("#generate")
        page.wait_for_function(
            "document.querySelectorAll('.column[data-done]').length === 3", timeout=60_000
        )
        samples = page.evaluate(
            "[...document.querySelectorAll('.column')].map(c => [c.dataset.seed, c.dataset.text,"
            " c.querySelector('h3').textContent])"
        )
        assert [c[2] for c in samples] == ["seed 77", "seed 78", "seed 79"]
        assert "done: 3 samples from seed 77" in page.inner_text("#status")
        page.wait_for_timeout(300)  # the URL follows the settings
        link = page.evaluate("location.search")
        assert "vary=seed" in link and "samples=3" in link

        page.select_option("#vary", "beams")
        assert page.is_visible("#beams") and not page.is_visible("#samples")
        page.fill("#beams", "4")
        page.fill("#length_penalty", "0.5")
        page.click("#generate")
        page.wait_for_function(
            "document.querySelectorAll('.column[data-done]').length === 4", timeout=60_000
        )
        beams = page.evaluate(
            "[...document.querySelectorAll('.column')].map(c => [c.dataset.text,"
            " Number(c.dataset.score), c.querySelector('h3').textContent])"
        )
        assert [b[2] for b in beams] == ["beam 1", "beam 2", "beam 3", "beam 4"]
        assert page.is_visible("#columns") and page.is_visible(".column >> nth=3")
        page.screenshot(path=str(screenshots / "beams-1400.png"), full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)
        _fits_420(page)
        page.screenshot(path=str(screenshots / "beams-420.png"), full_page=True)
        browser.close()
    assert not page.errors
    _, tokenizer, model = load_run(trained_run)
    cfg = SamplingConfig(top_k=5)
    together = generate(model, tokenizer, "the ", length=40, sampling=cfg, num_samples=3, seed=77)
    assert [c[1] for c in samples] == [s.text for s in together]
    best = beam_generate(
        model, tokenizer, "the ", beams=4, length=40, length_penalty=0.5, sampling=cfg
    )
    assert [b[0] for b in beams] == [s.text for s in best]
    assert [b[1] for b in beams] == pytest.approx([s.logprobs[0] for s in best], abs=1e-9)


def test_write_with_the_model(trained_run: Path, screenshots: Path) -> None:
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url)
        page.fill("#prompt", "the cat ")
        page.click("#tab-write")
        assert not page.is_visible("#prompt")  # the text so far takes its place
        assert page.input_value("#write-text") == "the cat "
        page.wait_for_function("document.getElementById('choices').dataset.context === 'the cat '")
        choices = page.evaluate(
            "[...document.querySelectorAll('.choice')].map(b => [b.dataset.token, +b.dataset.p])"
        )
        assert 1 <= len(choices) <= 10 and sum(p for _, p in choices) <= 1 + 1e-9
        answer = page.request.post(url + "/v1/distribution", data={"prompt": "the cat "}).json()
        assert [t for t, _ in choices] == answer["stages"][-1]["tokens"][:10]
        # a pick appends the token; Undo (the button, then Ctrl+Z) takes it back
        token = choices[1][0]
        page.click(".choice >> nth=1")
        assert page.input_value("#write-text") == "the cat " + token
        page.wait_for_function(
            "document.getElementById('choices').dataset.context === "
            + json.dumps("the cat " + token)
        )
        page.click("#write-undo")
        assert page.input_value("#write-text") == "the cat "
        page.wait_for_function("document.getElementById('choices').dataset.context === 'the cat '")
        page.focus(".choice >> nth=0")
        page.keyboard.press("1")  # keys pick too
        first = choices[0][0]
        assert page.input_value("#write-text") == "the cat " + first
        page.keyboard.press("Control+z")
        assert page.input_value("#write-text") == "the cat "
        # the user's own text, then the model continues from there (a seed kept: reproducible)
        page.click("#write-text")
        page.keyboard.press("End")
        page.keyboard.type("s")
        assert page.input_value("#write-text") == "the cat s"
        page.fill("#length", "30")
        page.fill("#seed", "77")
        page.click("#write-continue")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('done')")
        grown = page.input_value("#write-text")
        expected = page.request.post(
            url + "/v1/generate", data={"prompt": "the cat s", "length": 30, "seed": 77}
        ).json()["text"]
        assert grown == "the cat s" + expected
        page.click("#write-undo")
        assert page.input_value("#write-text") == "the cat s"
        page.click("#write-undo")  # the typing, as one step
        assert page.input_value("#write-text") == "the cat "
        page.click("#write-continue")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('done')")
        with page.expect_download() as download:
            page.click("#write-download")
        saved = Path(download.value.path()).read_text(encoding="utf-8")
        assert saved == page.input_value("#write-text")
        assert download.value.suggested_filename.endswith(".txt")
        page.screenshot(path=str(screenshots / "write-1400.png"), full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)
        _fits_420(page)
        page.screenshot(path=str(screenshots / "write-420.png"), full_page=True)
        browser.close()
    assert not page.errors


def test_the_url_holds_every_setting(trained_run: Path) -> None:
    """A link restores every control (and opens the groups holding them); with its seed, it
    gives the same text; changing a control changes the link."""
    query = (
        "?temperature=0.6&top_k=7&min_p=0.05&length=50&seed=31337&repetition_penalty=1.2"
        "&dry_multiplier=0.8&dry_sequence_breakers=%5Cn%0A.&xtc_probability=0.3&mirostat_eta=0.2"
        "&ban_chars=q&stop=%5Cn%5Cn&prompt=a+dog+&regex=%5Ba-z+.%5Cn%5D%2B"
    )
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url, query=query)
        values = {
            "temperature": "0.6",
            "top_k": "7",
            "min_p": "0.05",
            "length": "50",
            "seed": "31337",
            "repetition_penalty": "1.2",
            "dry_multiplier": "0.8",
            "dry_sequence_breakers": "\\n\n.",
            "xtc_probability": "0.3",
            "mirostat_eta": "0.2",
            "ban_chars": "q",
            "stop": "\\n\\n",
            "prompt": "a dog ",
            "regex": "[a-z .\\n]+",
        }
        for name, value in values.items():
            assert page.input_value(f"#{name}") == value, name
        assert page.inner_text("#temperature-value") == "0.60"
        assert page.is_checked("#seed-lock")
        opened = page.evaluate(
            "[...document.querySelectorAll('details.group')].filter(d => d.open).map(d => d.id)"
        )
        assert set(opened) == {
            "group-truncation",
            "group-penalties",
            "group-dry",
            "group-adaptive",
            "group-constraints",
        }
        assert "1 changed" in page.inner_text("#group-penalties summary")
        # the link's sample, twice, and as /v1/generate gives it
        _, first = _generate(page)
        _, again = _generate(page)
        assert first == again
        body = {
            "prompt": "a dog ",
            "length": 50,
            "seed": 31337,
            "temperature": 0.6,
            "top_k": 7,
            "min_p": 0.05,
            "repetition_penalty": 1.2,
            "dry_multiplier": 0.8,
            "dry_sequence_breakers": ["\n", "."],
            "xtc_probability": 0.3,
            "mirostat_eta": 0.2,
            "ban_chars": "q",
            "stop": ["\n\n"],
            "regex": "[a-z .\n]+",
        }
        assert first == page.request.post(url + "/v1/generate", data=body).json()["text"]
        # a change reaches the link; a mode too; and the link restores them
        page.fill("#top_k", "9")
        page.click("#tab-compare")
        page.wait_for_function("location.search.includes('top_k=9')")
        link = page.url
        assert "mode=compare" in link and "seed=31337" in link
        fresh = browser.new_page()
        fresh.goto(link)
        fresh.wait_for_selector("body[data-ready='1']")
        assert fresh.input_value("#top_k") == "9" and fresh.is_visible("#mode-compare")
        assert fresh.get_attribute("#tab-compare", "aria-selected") == "true"
        # resetting brings the defaults back, and the link with them
        page.click("#tab-generate")
        page.click("#reset-settings")
        page.wait_for_function("!location.search.includes('top_k')")
        assert page.input_value("#top_k") == "" and page.input_value("#dry_sequence_breakers") == (
            '\\n\n:\n"\n*'
        )
        browser.close()
    assert not page.errors


def test_docs_render_offline(trained_run: Path, screenshots: Path) -> None:
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        blocked: list[str] = []

        def only_local(route) -> None:
            if route.request.url.startswith(url):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page = context.new_page()
        page.goto(url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "chargen playground" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-summary-path[data-path='/v1/generate']")
        page.screenshot(path=str(screenshots / "docs-1400.png"))
        icon = page.request.get(url + "/favicon.ico")
        assert icon.ok and icon.headers["content-type"].startswith("image/")
        browser.close()
    assert blocked == []  # nothing was even asked of the network


def test_the_page_follows_a_run_still_training(trained_run: Path, tmp_path: Path) -> None:
    """A new best written into the served folder: the note under the curves says the server
    now serves it (the page looks every 5 s), and the curves redraw from the new metrics."""
    import shutil

    import chargen
    from chargen import checkpoint as ckpt
    from chargen.server.app import create_app
    from tests.serving import running_app

    served, ahead = tmp_path / "served", tmp_path / "ahead"
    shutil.copytree(trained_run, served)
    shutil.copytree(trained_run, ahead)
    chargen.train(ckpt.load_config(trained_run).data.source, ahead, steps=60, resume=True)
    with running_app(create_app(served, follow_s=0.1)) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url)
        note = page.inner_text("#live-note")
        assert "Serving best.safetensors of step" in note and "reloaded" not in note
        for name in (ckpt.METRICS, ckpt.BEST):  # the trainer's atomic writes, played by hand
            shutil.copyfile(ahead / name, served / (name + ".new"))
            (served / (name + ".new")).replace(served / name)
        step = ckpt.read_safetensors(ahead / ckpt.BEST)[1]["step"]
        page.wait_for_function(
            "document.getElementById('live-note').textContent.includes('reloaded 1 time')",
            timeout=20_000,
        )
        assert f"of step {step}" in page.inner_text("#live-note")
        assert f"at step {step}" in page.inner_text("#curves-caption")
        assert not page.errors
        browser.close()


def test_see_inside_the_text_just_generated_and_hold_a_unit(
    trained_run: Path, screenshots: Path
) -> None:
    """The playground opens the neuron view of the text it just generated (a tab of its own);
    there, holding a unit and writing gives what ``generate`` gives with ``--clamp`` for the
    seed shown, beside the same seed left free."""
    from chargen.checkpoint import load_run
    from chargen.generate import generate
    from chargen.sampling import SamplingConfig

    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser, page = _open(pw, url, query="?length=120")
        assert page.is_disabled("#neurons-open")  # nothing generated yet
        prompt = page.input_value("#prompt")
        _, generated = _generate(page)
        with page.context.expect_page() as opened:
            page.click("#neurons-open")
        lab = opened.value
        lab.errors = []
        lab.on("pageerror", lambda exc: lab.errors.append(str(exc)))
        lab.wait_for_selector("body[data-ready='1']", timeout=60_000)
        shown = lab.evaluate("JSON.parse(document.getElementById('data').textContent).text")
        assert shown == prompt + generated  # the text just generated, read by the model
        option = lab.eval_on_selector_all(
            "#unit option", "os => os.find(o => o.textContent === 'layer 0 cell 5').value"
        )
        lab.select_option("#unit", option)
        assert lab.inner_text("#hold-unit") == "0:cell:5"
        lab.fill("#hold-value", "4")
        lab.fill("#hold-prompt", "the ")
        lab.fill("#hold-length", "80")
        lab.fill("#hold-temp", "0.7")
        assert (
            "--clamp 0:cell:5=4 --prompt 'the ' --seed 1 --length 80 --temperature 0.7"
            in lab.inner_text("#hold-command")
        )
        lab.click("#hold-go")
        lab.wait_for_selector("body[data-held='1']", timeout=60_000)
        held, free = lab.inner_text("#hold-held"), lab.inner_text("#hold-free")
        seed = int(lab.inner_text("#hold-out h3:nth-of-type(1) >> nth=1").split("seed ")[1][:-1])
        assert f"--seed {seed} " in lab.inner_text("#hold-command")  # the command redraws it
        lab.set_viewport_size({"width": 1400, "height": 1000})
        lab.screenshot(path=str(screenshots / "neurons-hold-1400.png"), full_page=True)
        lab.set_viewport_size({"width": 420, "height": 1000})
        lab.screenshot(path=str(screenshots / "neurons-hold-420.png"), full_page=True)
        width = lab.evaluate("document.documentElement.scrollWidth")
        assert not page.errors and not lab.errors
        browser.close()
    assert width <= 420
    _, tokenizer, model = load_run(trained_run)
    for clamp, text in (((("0:cell:5=4",)), held), ((), free)):
        cfg = SamplingConfig(temperature=0.7, clamp=clamp)
        (sample,) = generate(model, tokenizer, "the ", length=80, sampling=cfg, seed=seed)
        # inner_text drops one trailing line break of the block (a text may end in several)
        assert text.rstrip("\n") == ("the " + sample.text).rstrip("\n")
    assert held != free
