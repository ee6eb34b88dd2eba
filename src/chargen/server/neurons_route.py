"""``POST /neurons``: the neuron lab page (``chargen neurons --html``) for a text, served.

The playground posts the text it just generated (an HTML form, so the page opens in a tab of
its own at a real address); the page it gets back can hold a unit and generate through
``/v1/generate`` (``clamp``), since it comes from the same server.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from chargen.errors import ChargenError
from chargen.models import LanguageModel
from chargen.neurons_page import analyse, lab_page, page_html
from chargen.tokenizer import Tokenizer

MAX_NEURON_CHARS = 8_000
"""Characters one request may record: every unit of an LSTM 2 x 512 over 8,000 characters
is 65 MB of float32, made and freed within the request."""


async def _text_of(request: Request) -> str:
    """The ``text`` field of a form (``application/x-www-form-urlencoded``) or a JSON body."""
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    try:
        if kind == "application/json":
            data: Any = json.loads(body)
            text = data.get("text") if isinstance(data, dict) else None
        else:
            fields = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
            text = fields.get("text", [None])[0]
    except (UnicodeDecodeError, ValueError):
        raise ChargenError("the body is not a form or JSON object with a text field") from None
    if not isinstance(text, str) or not text.strip():
        raise ChargenError("text is required: the characters to read (at least one)")
    if len(text) > MAX_NEURON_CHARS:
        raise ChargenError(
            f"text must be at most {MAX_NEURON_CHARS:,} characters for the neuron view, "
            f"got {len(text):,}"
        )
    return text.replace("\r\n", "\n")


def add_neuron_routes(
    app: FastAPI, model: LanguageModel, tokenizer: Tokenizer, lock: Any, run_name: str
) -> None:
    """``POST /neurons``: the lab page for ``text`` (HTML); ``lock`` guards the model."""

    @app.post("/neurons", response_class=HTMLResponse)
    async def neurons(request: Request) -> HTMLResponse:
        """The neuron lab for ``text`` (form or JSON field, at most 8,000 characters): the text
        coloured by any unit, the units found for each feature, select-a-span, and a unit held
        while generating (through /v1/generate's ``clamp``)."""
        text = await _text_of(request)

        def build() -> str:
            with torch.inference_mode(), lock:
                analysis = analyse(model, tokenizer, text, unknown="drop")
            chars = len(analysis.recording.text)
            summary = (
                f"{chars:,} characters read by the {analysis.recording.description} of run "
                f"{run_name}; {analysis.recording.units:,} units recorded."
            )
            data, _ = lab_page(analysis, summary, run_name, served=True)
            return page_html(f"Neurons of {run_name}", data)

        return HTMLResponse(await asyncio.to_thread(build))
