"""Debian's Chromium for the browser tests (the playground, the neuron page, the exported site)."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHARGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ABSENT = f"{CHROMIUM} is absent (Debian's chromium package; .ci/run installs it)"
