"""The neuron lab's bar on trained models: a unit that counts bracket depth, and one that knows
it is inside double quotes, emerge within 60 s of training on 2 CPU cores and are found.

Each corpus is built here (random balanced brackets up to depth 6 with letters between them;
phrases of words, some in double quotes); the run trains with the default preset for at most
`BUDGET_MIN` minutes; the units are ranked on a fresh text from the same generator (never
trained on) by the same code as ``chargen neurons``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from chargen.checkpoint import load_run
from chargen.cli import main as cli_main
from chargen.neurons import correlations, feature_matrix, record
from chargen.text_features import text_features

BUDGET_MIN = 1.0  # the bar: at most 60 s of training
LETTERS = "abcdefghijklmnop"


def brackets(chars: int, seed: int) -> str:
    """Lines of random balanced round brackets, depth at most 6, letters between them."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < chars:
        depth, out = 0, []
        for _ in range(rng.randint(20, 60)):
            move = rng.random()
            if move < 0.25 and depth < 6:
                out.append("(")
                depth += 1
            elif move < 0.5 and depth > 0:
                out.append(")")
                depth -= 1
            else:
                out.append(rng.choice(LETTERS))
        out.append(")" * depth)
        lines.append("".join(out))
        size += len(lines[-1]) + 1
    return "\n".join(lines) + "\n"


def quoted(chars: int, seed: int) -> str:
    """Runs of random letters, about a third of them in double quotes and in capitals, as
    shouting in a story: only a memory of the open quote predicts the case of the next letter
    (random letters leave nothing else to count, such as the place in a word)."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < chars:
        inside = rng.random() < 0.35
        run = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 15)))
        part = f'"{run.upper()}"' if inside else run
        parts.append(part + (".\n" if rng.random() < 0.15 else " "))
        size += len(parts[-1])
    return "".join(parts)


def best_r(tmp_path: Path, text: str, probe: str, feature: str) -> float:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    run = tmp_path / "run"
    # no dropout: dropout spreads what the model knows over many units, so no one unit holds it
    flags = ["--minutes", str(BUDGET_MIN), "--threads", "2", "--sample-every", "1000"]
    flags += ["--dropout", "0"]
    assert cli_main(["train", str(corpus), "--out", str(run), *flags]) == 0
    _, tokenizer, model = load_run(run)
    recording = record(model, tokenizer, probe)
    names, matrix = feature_matrix(text_features(recording.text))
    r = correlations(matrix, recording.activations)
    best = float(np.abs(r[names.index(feature)]).max())
    print(f"best |r| for {feature}: {best:.3f}")  # shown with -s or on failure
    return best


@pytest.mark.slow
def test_a_unit_counts_bracket_depth(tmp_path: Path) -> None:
    assert best_r(tmp_path, brackets(60_000, 1), brackets(6_000, 2), "round_depth") >= 0.8


@pytest.mark.slow
def test_a_unit_knows_it_is_inside_double_quotes(tmp_path: Path) -> None:
    assert best_r(tmp_path, quoted(60_000, 1), quoted(6_000, 2), "in_double_quotes") >= 0.8
