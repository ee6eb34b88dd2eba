"""The neuron lab page: one self-contained HTML file (no network, no build step).

The page holds the text, each embedded unit's activations quantised to int8 over the unit's own
range (``value ~= offset + q * scale``, base64, decoded in the browser only when a unit is shown
or a span is looked up) with its colour scales (``neurons.colour_scales``), and the top
guesses per character (ids and ``round(p * 255)``). A page holds all
units when they fit ``PAGE_BUDGET`` bytes of int8 (characters x units), else a chosen subset
(``neurons.choose_units``), and says which. Template, style and script live in
``neurons_static/``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chargen.atomic import atomic_write_text
from chargen.neurons import (
    Recording,
    choose_units,
    colour_scales,
    constant_features,
    correlations,
    feature_matrix,
    quantise,
    rank_units,
    record,
)
from chargen.text_features import BUILTIN, LABELS, definition, text_features

if TYPE_CHECKING:
    from chargen.models import LanguageModel
    from chargen.tokenizer import Tokenizer

STATIC = Path(__file__).resolve().parent / "neurons_static"
PAGE_BUDGET = 60_000_000  # bytes of int8 activations (characters x units) a page may embed
UNIT_BLOCK = 128  # units quantised at a time (bounds the float32 temporaries)


@dataclass
class Analysis:
    """A recording, the features of its text and each unit's r with each of them."""

    recording: Recording
    names: list[str]
    r: np.ndarray  # (features, units)
    constant: np.ndarray  # (features,) bool: absent from the text, not ranked
    ranking: list[dict[str, Any]]  # rank_units' records, ``top`` per feature
    patterns: dict[str, str]  # user feature name -> its regular expression


def analyse(
    model: LanguageModel,
    tokenizer: Tokenizer,
    text: str,
    user: Sequence[tuple[str, re.Pattern[str]]] = (),
    top: int = 3,
    unknown: str = "warn",
) -> Analysis:
    """Record every unit over ``text`` and rank the units of each feature by |r|."""
    recording = record(model, tokenizer, text, unknown)
    names, matrix = feature_matrix(text_features(recording.text, list(user)))
    r = correlations(matrix, recording.activations)
    constant = constant_features(matrix)
    ranking = rank_units(r, names, recording, top, constant)
    return Analysis(recording, names, r, constant, ranking, {name: p.pattern for name, p in user})


def lab_page(
    analysis: Analysis,
    summary: str,
    run: str,
    requested: Sequence[int] = (),
    served: bool = False,
) -> tuple[dict[str, Any], str]:
    """(the page's data, what it embeds): units within ``PAGE_BUDGET``, ``requested`` first.

    ``run`` names the run in the page's ``--clamp`` command line; ``served``: the page came
    from ``chargen serve``, so it can generate with a unit held (``/v1/generate``).
    """
    columns, embedded = choose_units(
        analysis.r, analysis.ranking, analysis.recording, requested, PAGE_BUDGET
    )
    data = page_data(
        analysis.recording,
        analysis.names,
        analysis.r,
        analysis.constant,
        analysis.ranking,
        columns,
        f"This page holds {embedded}.",
        summary,
        analysis.patterns,
    )
    data["run"] = run
    data["served"] = served
    return data, embedded


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def page_data(
    recording: Recording,
    names: list[str],
    r: np.ndarray,
    constant: np.ndarray,
    ranking: list[dict[str, Any]],
    columns: list[int],
    embedded: str,
    summary: str,
    patterns: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON the page reads (see the module notes)."""
    position = {column: k for k, column in enumerate(columns)}
    units = []
    for start in range(0, len(columns), UNIT_BLOCK):
        block = recording.activations[:, columns[start : start + UNIT_BLOCK]]
        q, offset, scale = quantise(block)
        q = np.ascontiguousarray(q.T)  # one row of n bytes per unit
        scales = colour_scales(block)
        for k, column in enumerate(columns[start : start + UNIT_BLOCK]):
            layer, kind, unit = recording.unit(column)
            units.append(
                {
                    "layer": layer,
                    "kind": kind,
                    "unit": unit,
                    "offset": float(offset[k]),
                    "scale": float(scale[k]),
                    "median": float(scales["median"][k]),
                    "zero": float(scales["zero"][k]),
                    "spread": float(scales["spread"][k]),
                    "centred": bool(scales["centred"][k]),
                    "data": _b64(q[k]),
                }
            )
    found = []
    for j, name in enumerate(names):
        ranked = [
            {
                "u": position[recording.column(item["layer"], item["kind"], item["unit"])],
                "r": item["r"],
            }
            for item in ranking
            if item["feature"] == name
        ]
        found.append(
            {
                "name": name,
                "label": LABELS.get(name, name),
                "definition": definition(name)
                if name in BUILTIN
                else f"1 inside a match of the regular expression {(patterns or {}).get(name, '?')}",
                "constant": bool(constant[j]),
                "ranked": ranked,
            }
        )
    initial = 0
    if ranking:
        best = max(ranking, key=lambda item: abs(float(item["r"])))
        initial = position[recording.column(best["layer"], best["kind"], best["unit"])]
    vocab = len(recording.pieces)
    width = 1 if vocab <= 256 else 2 if vocab <= 65536 else 4
    ids = recording.guess_ids.astype(f"<u{width}")
    probs = np.rint(recording.guess_probs * 255).clip(0, 255).astype(np.uint8)
    return {
        "summary": summary,
        "embedded": embedded,
        "text": recording.text,
        "vocab": recording.pieces,
        "k": int(recording.guess_ids.shape[1]),
        "guessWidth": width,
        "guessIds": _b64(ids),
        "guessProbs": _b64(probs),
        "units": units,
        "found": found,
        "initial": initial,
    }


def page_html(title: str, data: dict[str, Any]) -> str:
    """The page: the template with its style, script, title and data inlined."""
    template = (STATIC / "page.html").read_text(encoding="utf-8")
    head, tail = template.split("__DATA__")
    css = (STATIC / "neurons.css").read_text(encoding="utf-8")
    js = (STATIC / "neurons.js").read_text(encoding="utf-8")
    head = head.replace("__CSS__", css).replace("__TITLE__", html.escape(title))
    tail = tail.replace("__JS__", js)
    # inside <script>, "<" is written \u003c so no "</script>" can end the data early
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return head + payload + tail


def write_page(path: str, title: str, data: dict[str, Any]) -> int:
    """Write the page atomically; return its size in bytes."""
    text = page_html(title, data)
    atomic_write_text(path, text)
    return len(text.encode("utf-8"))
