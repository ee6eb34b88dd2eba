"""Surprisal of every character of a text under a model, and a page that colours it.

``surprisal(t) = -log2 p(token t | tokens before t)`` in bits; the first token is predicted
from the same start token an empty prompt uses. Bits per character = total bits / characters.

``SURPRISAL_SCALE`` is the one colour scale for surprisal: this module's page and the
playground (which gets it from ``GET /v1/model``) both colour and label by it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chargen.atomic import atomic_write_text
from chargen.generate import start_token
from chargen.models import LanguageModel
from chargen.tokenizer import Tokenizer

CHUNK = 512

# Surprisal in bits -> background colour, one table for `score --html` and the playground.
# Each bin holds from its ``from`` (bits) up to the next bin's; pale enough that black text
# stays readable on every one (contrast >= 9:1). 1 bit is p = 1/2, 2 bits p = 1/4, 8 bits 1/256.
SURPRISAL_SCALE: dict[str, Any] = {
    "unit": "bits",
    "title": "surprisal −log₂ p",
    "bins": [
        {"from": 0.0, "colour": "#ffffff", "label": "< 1"},
        {"from": 1.0, "colour": "#fff3c4", "label": "1–2"},
        {"from": 2.0, "colour": "#ffe08f", "label": "2–4"},
        {"from": 4.0, "colour": "#ffc58a", "label": "4–6"},
        {"from": 6.0, "colour": "#ffab94", "label": "6–8"},
        {"from": 8.0, "colour": "#ff8f8f", "label": "≥ 8"},
    ],
}


def surprisal_colour(bits: float) -> str:
    """The scale's colour for ``bits`` (infinite or NaN: the top bin's)."""
    bins = SURPRISAL_SCALE["bins"]
    if not math.isfinite(bits):
        return str(bins[-1]["colour"])
    chosen = bins[0]
    for b in bins:
        if bits >= b["from"]:
            chosen = b
    return str(chosen["colour"])


def surprisal_legend_html(per: str) -> str:
    """The scale as one line of HTML (swatches are ``<i>``: a page's spans are its tokens)."""
    swatches = " ".join(
        f'<i class="sw" style="background:{b["colour"]}">{html.escape(b["label"])}</i>'
        for b in SURPRISAL_SCALE["bins"]
    )
    return (
        f"<p class=legend>{html.escape(SURPRISAL_SCALE['title'])}, in bits per {per}: "
        f"{swatches} (pale = expected, red = surprising)</p>"
    )


@dataclass
class Scored:
    """Per-token surprisal (bits) of a text."""

    pieces: list[str]
    bits: np.ndarray

    @property
    def chars(self) -> int:
        return sum(len(p) for p in self.pieces)

    @property
    def bits_per_char(self) -> float:
        return float(self.bits.sum()) / max(self.chars, 1)


@torch.inference_mode()
def score_text(
    model: LanguageModel, tokenizer: Tokenizer, text: str, unknown: str = "warn"
) -> Scored:
    """Surprisal of each token of ``text`` (unknown symbols handled by ``unknown``)."""
    model.eval()
    ids = tokenizer.encode(text, unknown=unknown).tolist()
    device = model.head.weight.device
    seq = torch.tensor([start_token(tokenizer), *ids], dtype=torch.long, device=device)
    state = model.initial_state(1, device)
    bits: list[np.ndarray] = []
    for start in range(0, len(ids), CHUNK):
        x = seq[start : start + CHUNK][None]
        y = seq[start + 1 : start + CHUNK + 1][None]
        logits, state = model(x[:, : y.shape[1]], state)
        nats = F.cross_entropy(logits[0].float(), y[0], reduction="none")
        bits.append((nats / math.log(2)).cpu().numpy())
    values = np.concatenate(bits) if bits else np.zeros(0)
    return Scored([tokenizer.decode([i]) for i in ids], values)


def surprisal_html(
    scored: Scored,
    title: str,
    copies: Sequence[tuple[int, int]] | None = None,
    min_span: int | None = None,
) -> str:
    """A self-contained page: each token's background from ``SURPRISAL_SCALE``.

    ``copies``: ``(start, end)`` character ranges of the scored text (the pieces joined) found
    verbatim in the training text, merged and in order (``run_novelty.merge_spans``); they are
    underlined, and the legend names ``min_span``. None: no copy check was asked for.
    """
    marked = bytearray(scored.chars)
    for start, end in copies or ():
        marked[start:end] = b"\x01" * (min(end, len(marked)) - start)
    spans = []
    at = 0
    per = "character" if all(len(p) <= 1 for p in scored.pieces) else "token"
    for piece, b in zip(scored.pieces, scored.bits.tolist(), strict=True):
        spans.append(
            f'<span style="background:{surprisal_colour(b)}" title="{b:.2f} bits">'
            f"{_marked_piece(piece, marked[at : at + len(piece)])}</span>"
        )
        at += len(piece)
    legend = ""
    if copies is not None:
        copied = sum(end - start for start, end in copies)
        stretches = f"{len(copies):,} stretch{'' if len(copies) == 1 else 'es'}"
        found = f"{stretches}, {copied:,} characters" if copies else "none in this text"
        legend = (
            f'<p><span class="copy">underlined</span>: copied from the training text '
            f"(&ge; {min_span} chars): {found}.</p>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "pre{white-space:pre-wrap;font-family:monospace;line-height:1.5}"
        ".copy{text-decoration:underline solid #1d4ed8;text-decoration-thickness:3px;"
        "text-underline-offset:3px;text-decoration-skip-ink:none}"
        ".sw{font-style:normal;padding:0 .4em;border:1px solid #ccd}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{scored.bits_per_char:.4f} bits per character over "
        f"{scored.chars:,} characters. Hover a {per} for its surprisal.</p>"
        f"{surprisal_legend_html(per)}{legend}<pre>{''.join(spans)}</pre></body></html>\n"
    )


def _marked_piece(piece: str, marked: bytes | bytearray) -> str:
    """``piece`` escaped, its runs of marked characters wrapped in ``<span class="copy">``."""
    if not any(marked):
        return html.escape(piece)
    out, start = [], 0
    for k in range(1, len(piece) + 1):
        if k == len(piece) or marked[k] != marked[start]:
            text = html.escape(piece[start:k])
            out.append(f'<span class="copy">{text}</span>' if marked[start] else text)
            start = k
    return "".join(out)


def write_surprisal_html(
    scored: Scored,
    title: str,
    path: str,
    copies: Sequence[tuple[int, int]] | None = None,
    min_span: int | None = None,
) -> None:
    atomic_write_text(path, surprisal_html(scored, title, copies, min_span))
