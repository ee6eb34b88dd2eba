"""End to end in headless Chromium: type a prompt, generate, watch the text stream in, move the
temperature slider and see the reweighted distribution change."""

from __future__ import annotations

import os
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


def test_playground_in_a_browser(trained_run: Path, tmp_path: Path) -> None:
    with running_server(trained_run) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.locator("#curves-caption").inner_text().startswith("last validation")

        page.fill("#prompt", "the cat ")
        page.fill("#length", "120")
        page.click("#generate")
        # text streams in: partial output is seen before the request finishes
        page.wait_for_function(
            "document.querySelectorAll('#output span:not(.prompt)').length >= 5", timeout=30_000
        )
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('done')", timeout=60_000
        )
        spans = page.locator("#output span:not(.prompt)")
        assert spans.count() == 120
        assert "rgb(" in (spans.first.get_attribute("style") or "")  # coloured by probability

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
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        browser.close()
    assert requested and all(r.startswith(url) for r in requested)  # nothing from outside
