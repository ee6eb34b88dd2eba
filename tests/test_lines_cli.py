"""A list, one item per line, used as a person would: train --lines, eval, generate items.

Also the training clock on a tiny corpus: early stop, the memorising notice once, the final
line naming the best, and a bounded amount of console output.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from chargen.checkpoint import load_run
from chargen.lines import split_items
from tests.conftest import run_chargen

LIST_FLAGS = [
    "--embed-dim",
    "16",
    "--hidden-size",
    "48",
    "--batch-size",
    "32",
    "--eval-every",
    "20",
    "--threads",
    "1",
    "--sample-length",
    "0",
]


def make_names(count: int = 600, seed: int = 0) -> list[str]:
    """Pronounceable names from a small syllable grammar: learnable, mostly distinct."""
    rng = random.Random(seed)
    onsets = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "sh", "th"]
    vowels = ["a", "e", "i", "o", "u", "ia", "ae"]
    names: set[str] = set()
    while len(names) < count:
        name = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
        names.add(name + rng.choice(["", "n", "l", "s"]))
    return sorted(names)


@pytest.fixture(scope="module")
def names_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    folder = tmp_path_factory.mktemp("names")
    names = make_names()
    source = folder / "names.txt"
    # blank lines and stray spaces are not items
    source.write_text(
        "\n".join(names[:300]) + "\n\n  \n" + "\n".join(f" {n} " for n in names[300:])
    )
    run = folder / "run"
    result = run_chargen(
        "train", str(source), "--lines", "--out", str(run), "--steps", "150", *LIST_FLAGS
    )
    assert result.returncode == 0, result.stderr
    return source, run, names


def test_a_lines_run_records_the_mode_and_holds_out_random_lines(
    names_run: tuple[Path, Path, list[str]],
) -> None:
    _, run, names = names_run
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["lines"] is True
    _, val = split_items(len(names), 0.1)
    assert val.min() < len(names) // 4 and val.max() > 3 * len(names) // 4  # not the tail


def test_eval_scores_the_same_validation_items_as_training(
    names_run: tuple[Path, Path, list[str]],
) -> None:
    _, run, names = names_run
    result = run_chargen("eval", str(run), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    _, val = split_items(len(names), 0.1)
    assert data["scored"].startswith(f"the {len(val)} validation items")
    assert data["chars"] == sum(len(names[i]) + 1 for i in val)  # each item's end counts
    best = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in line
    ]
    assert min(r["val_nats_per_char"] for r in best) == pytest.approx(
        data["nats_per_char"], rel=1e-5
    )


def test_items_come_out_one_per_line_and_nothing_else(
    names_run: tuple[Path, Path, list[str]],
) -> None:
    _, run, _ = names_run
    result = run_chargen("generate", str(run), "--num-samples", "40", "--seed", "3")
    assert result.returncode == 0, result.stderr
    items = result.stdout.split("\n")
    assert items[-1] == "" and len(items) == 41  # 40 lines, each ended by a newline
    assert all(item and item == item.strip() for item in items[:-1])
    prompted = run_chargen(
        "generate", str(run), "--num-samples", "10", "--seed", "3", "--prompt", "sha"
    )
    assert all(line.startswith("sha") for line in prompted.stdout.splitlines())


def test_jsonl_gives_one_object_per_item(names_run: tuple[Path, Path, list[str]]) -> None:
    _, run, _ = names_run
    result = run_chargen(
        "generate", str(run), "--num-samples", "5", "--seed", "1", "--format", "jsonl"
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    plain = run_chargen("generate", str(run), "--num-samples", "5", "--seed", "1").stdout
    assert [r["text"] for r in records] == plain.splitlines()
    assert [r["seed"] for r in records] == [1, 2, 3, 4, 5]


def test_novelty_labels_are_exact(names_run: tuple[Path, Path, list[str]]) -> None:
    """Every label is checked against the list itself, split the same way."""
    _, run, names = names_run
    train, val = split_items(len(names), 0.1)
    train_set = {names[i] for i in train}
    val_set = {names[i] for i in val}
    result = run_chargen(
        "generate",
        str(run),
        "--num-samples",
        "300",
        "--seed",
        "0",
        "--novelty",
        "--temperature",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    counts = {"train": 0, "val": 0, "new": 0}
    for line in result.stdout.splitlines():
        item, label = line.split("\t")
        expected = "train" if item in train_set else "val" if item in val_set else "new"
        assert label == expected, (item, label)
        counts[label] += 1
    summary = [ln for ln in result.stderr.splitlines() if ln.startswith("new ")]
    share = 100 * counts["new"] / 300
    assert summary == [
        f"new {counts['new']}/300 ({share:.1f}%), in train {counts['train']}, in val {counts['val']}"
    ]
    assert counts["train"] > 0  # a trained model repeats some of its items: the labels matter


def test_only_new_draws_until_enough_new_items(names_run: tuple[Path, Path, list[str]]) -> None:
    _, run, names = names_run
    result = run_chargen("generate", str(run), "--num-samples", "20", "--seed", "0", "--only-new")
    assert result.returncode == 0, result.stderr
    items = result.stdout.splitlines()
    assert len(items) == 20 and len(set(items)) == 20
    assert not set(items) & set(names)
    greedy = run_chargen(
        "generate",
        str(run),
        "--num-samples",
        "5",
        "--only-new",
        "--temperature",
        "0",
        "--seed",
        "0",
    )  # greedy always draws the same item: the cap is reached and said
    assert greedy.returncode == 2
    assert "only" in greedy.stderr and "--only-new stops after 100 draws" in greedy.stderr


def test_items_are_drawn_from_the_boundary_alone(names_run: tuple[Path, Path, list[str]]) -> None:
    """An item is drawn from a fresh state that has read only the boundary and its prompt."""
    from chargen.generate import generate

    _, run, _ = names_run
    _, tokenizer, model = load_run(run)
    (expected,) = generate(model, tokenizer, "\nsha", length=10, seed=5, stop=["\n"])
    cli = run_chargen("generate", str(run), "--prompt", "sha", "--seed", "5", "--length", "10")
    assert cli.stdout == "sha" + expected.text + "\n"
    bad = run_chargen("generate", str(run), "--prompt", "a\\nb", "--seed", "1")
    assert bad.returncode == 2 and "cannot hold a line break" in bad.stderr


def test_beams_of_a_list_are_whole_items(names_run: tuple[Path, Path, list[str]]) -> None:
    """Beam search on a --lines run reads the prompt from the boundary, as items are drawn,
    and ends each beam at the next boundary: one item per line, headers on stderr."""
    import chargen

    _, run, _ = names_run
    result = run_chargen(
        "generate", str(run), "--beams", "5", "--num-samples", "5", "--prompt", "sha",
        "--length", "40",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 6
    assert all(line.startswith("sha") and line == line.strip() for line in lines[:-1])
    assert result.stderr.count("------ beam") == 5
    found = chargen.load(run).beams("sha", length=40, width=5)
    assert ["sha" + s.text for s in found] == lines[:-1]
    _, tokenizer, model = load_run(run)
    boundary = tokenizer.vocab.index("\n")
    assert all(s.stop_reason == "stop" and s.tokens[-1] == boundary for s in found)
    # the oracle for the first beam's score: its tokens read from "\nsha" by the model, each
    # log p from one forward pass, normalised by the beam's length
    best = found[0]
    ids = [boundary, *tokenizer.encode("sha").tolist(), *best.tokens]
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]), None)
    logp = torch.log_softmax(logits[0].double(), -1)
    start = len(ids) - 1 - len(best.tokens)
    total = sum(float(logp[start + i, t]) for i, t in enumerate(best.tokens))
    assert best.logprobs[0] == pytest.approx(total / len(best.tokens), abs=1e-5)


def test_a_prose_run_prints_one_sample_per_line_with_lines(trained_run: Path) -> None:
    from chargen.escapes import decode_escapes

    result = run_chargen(
        "generate", str(trained_run), "--num-samples", "3", "--format", "lines", "--seed", "2"
    )
    rows = result.stdout.splitlines()
    assert len(rows) == 3
    plain = run_chargen("generate", str(trained_run), "--seed", "3").stdout
    assert decode_escapes(rows[1]) == plain[:-1]  # sample 2 has seed 3; text adds one newline


# ------------------------------------------------------------------ the training clock
def test_early_stop_and_the_notice_on_a_tiny_list(tmp_path: Path) -> None:
    """A tiny list memorised fast: the notice comes once, patience stops the run, the final
    line names the best."""
    source = tmp_path / "tiny.txt"
    source.write_text("\n".join(make_names(60, seed=4)) + "\n")
    run = tmp_path / "run"
    result = run_chargen(
        "train", str(source), "--lines", "--out", str(run), "--steps", "3000",
        "--embed-dim", "16", "--hidden-size", "128", "--batch-size", "8", "--lr", "0.01",
        "--eval-every", "10", "--threads", "1", "--sample-length", "0", "--patience", "15",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = [ln for ln in result.stdout.splitlines() if "memorising the training text" in ln]
    assert len(notes) == 1
    stopped = [ln for ln in result.stdout.splitlines() if ln.startswith("stopped early")]
    assert stopped == ["stopped early: 15 evaluations without a new best (--patience 15)"]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    best = min(evals, key=lambda r: r["val_nats_per_char"])
    assert evals[-1]["step"] - best["step"] == 15 * 10 and evals[-1]["step"] < 3000
    done = result.stderr.strip().splitlines()[-1]
    assert f"best {best['val_nats_per_char']:.4f} nats/char at step {best['step']}," in done


def test_no_early_stop_while_the_loss_still_falls(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("\n".join(make_names(400, seed=5)) + "\n")
    result = run_chargen(
        "train", str(source), "--lines", "--out", str(tmp_path / "run"), "--steps", "60",
        *LIST_FLAGS, "--patience", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "stopped early" not in result.stdout and "memorising" not in result.stdout


def test_console_output_stays_short_on_a_tiny_corpus(tmp_path: Path) -> None:
    source = tmp_path / "tiny.txt"
    source.write_text("the cat sat on the mat.\n" * 40)
    result = run_chargen(
        "train", str(source), "--out", str(tmp_path / "run"), "--steps", "400", "--seq-len", "16",
        "--embed-dim", "8", "--hidden-size", "32", "--batch-size", "4", "--eval-every", "5",
        "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # 80 evaluations and 100 tiny epochs: printed at most every 3 s; samples once, at the end
    lines = result.stdout.splitlines()
    final = max(i for i, line in enumerate(lines) if line.startswith("--- samples"))
    assert final <= 1 + 10, "\n".join(lines)  # the header and a few evaluation lines
    assert [ln for ln in lines[final:] if ln.startswith("------ temperature")] == [
        f"------ temperature: {t}" for t in (0.2, 0.5, 1.0, 1.2)
    ]  # the last block whole, as the book prints it
    evals = [
        x for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"eval"' in x
    ]
    assert len(evals) >= 80  # every evaluation is still in metrics.jsonl


def test_the_split_is_stable_across_resume(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    names = make_names(200, seed=6)
    source.write_text("\n".join(names) + "\n")
    run = tmp_path / "run"
    first = run_chargen(
        "train", str(source), "--lines", "--out", str(run), "--steps", "20", *LIST_FLAGS
    )
    assert first.returncode == 0, first.stderr
    again = run_chargen("train", "--out", str(run), "--resume", "--steps", "40")
    assert again.returncode == 0, again.stderr
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 40
    data = json.loads(run_chargen("eval", str(run), "--json", "--weights", "last").stdout)
    _, val = split_items(len(names), 0.1)
    assert data["chars"] == int(np.sum([len(names[i]) + 1 for i in val]))
