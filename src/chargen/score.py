"""Surprisal of every character of a text under a model, and a page that colours it.

``surprisal(t) = -log2 p(token t | tokens before t)`` in bits; the first token is predicted
from the same start token an empty prompt uses. Bits per character = total bits / characters.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from chargen.atomic import atomic_write_text
from chargen.generate import start_token
from chargen.models import LanguageModel
from chargen.tokenizer import Tokenizer

CHUNK = 512


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


def surprisal_html(scored: Scored, title: str) -> str:
    """A self-contained page: each token's background from white (0 bits) to red (>= 8 bits)."""
    spans = []
    for piece, b in zip(scored.pieces, scored.bits.tolist(), strict=True):
        level = min(1.0, b / 8.0)
        colour = f"rgb(255,{int(255 * (1 - level))},{int(255 * (1 - level))})"
        spans.append(
            f'<span style="background:{colour}" title="{b:.2f} bits">{html.escape(piece)}</span>'
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "pre{white-space:pre-wrap;font-family:monospace;line-height:1.5}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{scored.bits_per_char:.4f} bits per character over "
        f"{scored.chars:,} characters. Hover a character for its surprisal; white = 0 bits, red = 8+ bits.</p>"
        f"<pre>{''.join(spans)}</pre></body></html>\n"
    )


def write_surprisal_html(scored: Scored, title: str, path: str) -> None:
    atomic_write_text(path, surprisal_html(scored, title))
