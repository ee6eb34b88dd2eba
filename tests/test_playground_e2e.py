"""End to end in headless Chromium: the page opens on the run's seed text, generates (a fresh
seed per click, shown, and reproducing its text when kept), keeps warnings in view, colours by
surprisal with a toggle, redraws the reweighted distribution as the slider moves, reflows at
420 px, and ``/docs`` renders with the network blocked.

Screenshots at 1400 and 420 px go to ``$CHARGEN_SCREENSHOTS`` (else a pytest temporary folder);
the folder is printed past pytest's capture, so a CI log names it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHARGEN_CHROMIUM", "/usr/bin/chromium")
pytest.importorskip("fastapi", reason="the serve extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is absent (Debian's chromium package; .ci/run installs it)",
        allow_module_level=True,
    )

from tests.serving import running_server  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

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
            "[...document.querySelectorAll('input, textarea, select')]"
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

        # the temperature slider reweights the next-character distribution
        page.wait_for_function("document.getElementById('chart-t').dataset.entropy !== undefined")
        at_one = float(page.get_attribute("#chart-t", "data-entropy"))
        page.fill("#temperature", "0.2")
        page.wait_for_function(
            f"document.getElementById('chart-t').dataset.entropy !== '{at_one:.4f}'"
        )
        cold = float(page.get_attribute("#chart-t", "data-entropy"))
        assert cold < at_one
        assert "T = 0.20" in page.inner_text("#caption-t")
        page.fill("#temperature", "1.8")
        page.wait_for_function(
            f"parseFloat(document.getElementById('chart-t').dataset.entropy) > {at_one}"
        )
        page.fill("#temperature", "1")
        page.screenshot(path=str(screenshots / "playground-1400.png"), full_page=True)

        # a phone: one column, nothing wider than the screen, canvases within their boxes
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)  # the resize observer redraws on the next frame
        widths = page.evaluate(
            "({doc: document.documentElement.scrollWidth, view: window.innerWidth,"
            " canvases: [...document.querySelectorAll('canvas')]"
            ".map(c => c.getBoundingClientRect().right)})"
        )
        assert widths["doc"] <= widths["view"] == 420
        assert all(right <= 420 for right in widths["canvases"])
        page.screenshot(path=str(screenshots / "playground-420.png"), full_page=True)
        browser.close()
    assert not errors
    assert requested and all(r.startswith(url) for r in requested)  # nothing from outside


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
