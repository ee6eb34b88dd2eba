"""Novelty against a run's own training data: RunNovelty, `chargen novelty`, `score --copies`,
`prepare --novelty-index`. The oracle is plain `in` / `str.find` on the training text."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from chargen.checkpoint import load_run
from chargen.cli import main
from chargen.errors import ConfigError
from chargen.lines import item_texts, lines_text, split_items
from chargen.novelty import Span
from chargen.prepare import NOVELTY_BUILT_FROM, NOVELTY_DIR, prepare
from chargen.run_novelty import RunNovelty, merge_spans
from chargen.tokenizer import CharTokenizer, WordTokenizer
from tests.conftest import make_text

FOREIGN = "@#"  # characters the corpus of make_text never holds: a copy cannot cross them

# --------------------------------------------------------------------------- oracle


def brute_report(text: str, train: str, min_span: int = 20) -> dict:
    """Matching statistics by `in`, then the longest and the maximal spans (no offsets)."""
    lengths = []
    for i in range(len(text)):
        length = max(lengths[-1] - 1, 0) if lengths else 0
        while i + length < len(text) and text[i : i + length + 1] in train:
            length += 1
        lengths.append(length)
    best = max(lengths, default=0)
    spans, previous_end = [], 0
    for i, length in enumerate(lengths):
        if length >= min_span and (i == 0 or i + length > previous_end):
            spans.append((length, i))
        previous_end = i + length
    return {"longest": (best, lengths.index(best) if best else 0), "spans": spans}


def check_report(report: dict, text: str, train: str, min_span: int = 20) -> None:
    """`report` agrees with the oracle, and every corpus offset points at the copied text."""
    expected = brute_report(text, train, min_span)
    longest = report["longest"]
    assert (longest["length"], longest["text_offset"]) == expected["longest"]
    assert [(s["length"], s["text_offset"]) for s in report["spans"]] == expected["spans"]
    for span in [longest, *report["spans"]]:
        start, length, at = span["text_offset"], span["length"], span["corpus_offset"]
        assert train[at : at + length] == text[start : start + length]


def corpus_of(run: Path) -> str:
    return (run.parent / "corpus.txt").read_text(encoding="utf-8")


def train_text(run: Path) -> str:
    text = corpus_of(run)
    return text[: int(len(text) * 0.9)]  # char tokens: the training split is the first 90%


def planted(run: Path, start: int = 3000, length: int = 64) -> tuple[str, str]:
    train = train_text(run)
    piece = train[start : start + length]
    assert train.count(piece) == 1  # so str.find names the one offset the index can report
    return piece, f"{FOREIGN}{piece}{FOREIGN[::-1]}"


def with_source(config, source: Path, **data):  # type: ignore[no-untyped-def]
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, source=str(source), **data)
    )


# --------------------------------------------------------------------------- RunNovelty


def test_planted_span_has_the_length_and_offsets_of_str_find(trained_run: Path) -> None:
    config, tokenizer, _ = load_run(trained_run)
    novelty = RunNovelty.open(trained_run, config, tokenizer)
    assert novelty.items is None
    piece, text = planted(trained_run)
    report = novelty.report(text)
    train = train_text(trained_run)
    assert report["longest"] == {
        "length": len(piece),
        "text_offset": len(FOREIGN),
        "corpus_offset": train.find(piece),
    }
    assert report["spans"] == [report["longest"]]
    assert novelty.corpus_index() is novelty.corpus_index()  # built once
    # a longer, mixed text: every span against the oracle
    mixed = "the moon sees every child." + text + corpus_of(trained_run)[-300:] + "zzz"
    check_report(novelty.report(mixed, 12), mixed, train, 12)
    assert novelty.report(FOREIGN)["longest"] == {"length": 0, "text_offset": 0, "corpus_offset": 0}
    with pytest.raises(ConfigError, match="--min-span"):
        novelty.report(text, 0)


def test_word_runs_index_the_decoded_training_text(trained_run: Path) -> None:
    config, _, _ = load_run(trained_run)
    text = corpus_of(trained_run)
    words = WordTokenizer.build(text)
    config = with_source(config, trained_run.parent / "corpus.txt", tokenizer="word")
    novelty = RunNovelty.open(trained_run, config, words)
    ids = words.encode(text)
    train = words.decode(ids[: int(len(ids) * 0.9)])
    piece = train[2000:2070]
    query = f"{FOREIGN}{piece}{FOREIGN}"
    check_report(novelty.report(query), query, train)
    assert novelty.report(query)["longest"]["length"] == len(piece)


def test_lines_runs_label_items_and_index_the_training_items(
    trained_run: Path, tmp_path: Path
) -> None:
    names = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in ("la", "na", "ra", "ko")]
    source = tmp_path / "names.txt"
    source.write_text("  \n".join(names) + "\n\n", encoding="utf-8")  # stray blanks are dropped
    config, _, _ = load_run(trained_run)
    config = with_source(config, source, lines=True)
    tokenizer = CharTokenizer.build(lines_text(names))
    novelty = RunNovelty.open(trained_run, config, tokenizer)
    assert novelty.items is not None
    train_idx, val_idx = split_items(len(names), config.train.val_fraction)
    train_items, val_items = item_texts(names, train_idx), item_texts(names, val_idx)
    query = [train_items[3], val_items[0], "zzzz"]
    labels = novelty.items.labels(query)
    assert labels == ["train", "val", "new"]
    assert novelty.items.summary(labels) == "new 1/3 (33.3%), in train 1, in val 1"
    joined = "\n".join(train_items)
    text = "\n".join(query)
    check_report(novelty.report(text, 3), text, joined, 3)
    whole = "\n".join(train_items[5:9])
    assert novelty.report(whole)["longest"] == {
        "length": len(whole),
        "text_offset": 0,
        "corpus_offset": joined.find(whole),
    }


def test_merge_spans_joins_overlapping_and_touching_spans() -> None:
    spans = [Span(5, 10, 0), Span(6, 12, 99), {"length": 3, "text_offset": 18, "corpus_offset": 4}]
    assert merge_spans(spans) == [(10, 21)]
    assert merge_spans([Span(2, 8, 0), Span(3, 0, 0)]) == [(0, 3), (8, 10)]
    assert merge_spans([]) == []


# --------------------------------------------------------------------------- the command


def test_cli_text_json_and_stdin(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    piece, text = planted(trained_run)
    offset = train_text(trained_run).find(piece)
    path = tmp_path / "q.txt"
    path.write_text(text, encoding="utf-8")
    assert main(["novelty", str(trained_run), str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"longest copy: {len(piece)} chars at text offset 2 (training text offset {offset}): "
    )
    assert out[1] == "copied spans of at least 20 chars: 1"
    assert out[2].startswith(f"  {len(piece)} chars at text offset 2")

    assert main(["novelty", str(trained_run), str(path), "--json", "--min-span", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"longest", "spans"}
    for span in [report["longest"], *report["spans"]]:
        assert set(span) == {"length", "text_offset", "corpus_offset"}
        assert all(isinstance(v, int) for v in span.values())
    assert all(s["length"] >= 8 for s in report["spans"])
    check_report(report, text, train_text(trained_run), 8)

    for argv in (["-"], []):  # FILE "-" or absent: stdin
        stdin = io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8")
        monkeypatch.setattr(sys, "stdin", stdin)
        assert main(["novelty", str(trained_run), *argv, "--json", "--min-span", "8"]) == 0
        assert json.loads(capsys.readouterr().out) == report


def test_cli_refuses_bad_input_in_one_line(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b" \n"), encoding="utf-8"))
    assert main(["novelty", str(trained_run)]) == 2
    assert capsys.readouterr().err == "chargen: error: stdin: the text is empty\n"
    assert main(["novelty", str(trained_run), str(tmp_path / "missing.txt")]) == 2
    assert main(["novelty", str(trained_run), "-", "--min-span", "0"]) == 2
    assert main(["novelty", str(tmp_path / "no-run"), "-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err


def test_cli_lines_run_prints_labels_then_spans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in ("la", "na", "ra", "ko")]
    source = tmp_path / "names.txt"
    source.write_text("\n".join(names) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    flags = ["--embed-dim", "8", "--hidden-size", "16", "--batch-size", "8", "--threads", "1"]
    flags += ["--sample-length", "0", "--eval-every", "5"]
    assert main(["train", str(source), "--lines", "--out", str(run), "--steps", "5", *flags]) == 0
    capsys.readouterr()
    train_idx, val_idx = split_items(len(names), 0.1)
    query = f"{names[train_idx[0]]}\nzzzq\n{names[val_idx[0]]}\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(query.encode()), "utf-8"))
    assert main(["novelty", str(run), "--min-span", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        f"train\t{names[train_idx[0]]}",
        "new\tzzzq",
        f"val\t{names[val_idx[0]]}",
        "new 1/3 (33.3%), in train 1, in val 1",
    ]
    assert out[4].startswith("longest copy: ")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(query.encode()), "utf-8"))
    assert main(["novelty", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [item["label"] for item in report["items"]] == ["train", "new", "val"]
    assert report["summary"] == "new 1/3 (33.3%), in train 1, in val 1"


# --------------------------------------------------------------------------- prepared folders


def prepared_novelty(run: Path, folder: Path) -> RunNovelty:
    config, tokenizer, _ = load_run(run)
    return RunNovelty.open(run, with_source(config, folder), tokenizer)


def test_prepared_index_is_memory_mapped_and_reports_as_the_raw_corpus(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = trained_run.parent / "corpus.txt"
    data = tmp_path / "data"
    assert main(["prepare", str(corpus), "--out", str(data), "--quiet", "--novelty-index"]) == 0
    assert "novelty index over the" in capsys.readouterr().out
    assert (data / NOVELTY_DIR / NOVELTY_BUILT_FROM).exists()
    novelty = prepared_novelty(trained_run, data)
    index = novelty.corpus_index()
    assert isinstance(index.suffixes, np.memmap)  # the saved index, not a fresh build
    config, tokenizer, _ = load_run(trained_run)
    raw = RunNovelty.open(trained_run, config, tokenizer)
    _, text = planted(trained_run)
    mixed = text + corpus_of(trained_run)[-500:] + text[::-1]
    for min_span in (20, 6):
        assert novelty.report(mixed, min_span) == raw.report(mixed, min_span)
    check_report(novelty.report(mixed, 6), mixed, train_text(trained_run), 6)

    # the command on a run whose source is the prepared folder says the same
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    cfg["data"]["source"] = str(data)
    (run / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    query = tmp_path / "q.txt"
    query.write_text(mixed, encoding="utf-8")
    assert main(["novelty", str(run), str(query), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == raw.report(mixed)
    assert captured.err == ""


def test_missing_stale_and_damaged_indexes_are_not_used(
    trained_run: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    corpus = trained_run.parent / "corpus.txt"
    _, text = planted(trained_run)
    train = train_text(trained_run)

    # missing: built in memory, silently
    plain = tmp_path / "plain"
    prepare(str(corpus), plain, progress=False)
    novelty = prepared_novelty(trained_run, plain)
    check_report(novelty.report(text, 8), text, train, 8)
    assert not isinstance(novelty.corpus_index().suffixes, np.memmap)
    assert not recwarn.list

    data = tmp_path / "data"
    prepare(str(corpus), data, progress=False)

    def prepare_with_index() -> None:
        flags = ["--out", str(data), "--overwrite", "--quiet", "--novelty-index"]
        assert main(["prepare", str(corpus), *flags]) == 0

    prepare_with_index()

    # stale: the folder prepared again from another text (same characters) without an index
    other = tmp_path / "other.txt"
    other_text = make_text(seed=5)
    other.write_text(other_text, encoding="utf-8")
    assert set(other_text) == set(corpus.read_text(encoding="utf-8"))
    prepare(str(other), data, overwrite=True, progress=False)
    with pytest.warns(UserWarning, match="stale novelty index"):
        novelty = prepared_novelty(trained_run, data)
        report = novelty.report(text, 8)
    check_report(report, text, other_text[: int(len(other_text) * 0.9)], 8)

    # another split: the saved index covers the first 90%, this run holds out 20%
    prepare_with_index()
    config, tokenizer, _ = load_run(trained_run)
    config = with_source(config, data)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, val_fraction=0.2))
    with pytest.warns(UserWarning, match="another --val-fraction"):
        report = RunNovelty.open(trained_run, config, tokenizer).report(text, 8)
    full = corpus.read_text(encoding="utf-8")
    check_report(report, text, full[: int(len(full) * 0.8)], 8)

    # damaged, and interrupted (no built_from.json): never read as an index
    (data / NOVELTY_DIR / "sa.npy").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="sa.npy"):
        check_report(prepared_novelty(trained_run, data).report(text, 8), text, train, 8)
    (data / NOVELTY_DIR / NOVELTY_BUILT_FROM).unlink()
    with pytest.warns(UserWarning, match="incomplete novelty index"):
        check_report(prepared_novelty(trained_run, data).report(text, 8), text, train, 8)


def test_prepare_refuses_a_novelty_index_for_words(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = trained_run.parent / "corpus.txt"
    out = tmp_path / "words"
    argv = ["prepare", str(corpus), "--out", str(out), "--tokenizer", "word", "--novelty-index"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chargen: error: --novelty-index needs --tokenizer char")
    assert err.count("\n") == 1
    assert not out.exists()


# --------------------------------------------------------------------------- score --copies


class _Marked(HTMLParser):
    """The page's text, and which of its characters lie inside ``<span class="copy">``."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.inside = 0
        self.text: list[str] = []
        self.marked: list[bool] = []
        self.in_pre = False

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        if tag == "pre":
            self.in_pre = True
        if tag == "span":
            copy = ("class", "copy") in attrs
            self.stack.append(copy)
            self.inside += copy

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.in_pre = False
        if tag == "span":
            self.inside -= self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.in_pre:
            self.text.append(data)
            self.marked += [self.inside > 0] * len(data)


def test_score_html_copies_underlines_the_planted_span(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = train_text(trained_run)
    piece = train[4000:4050]
    filler = "ooooo eeeee kkkk "  # characters of the corpus, in an order it never has
    text = filler + piece + " " + filler
    path, page = tmp_path / "q.txt", tmp_path / "q.html"
    path.write_text(text, encoding="utf-8")
    argv = ["score", str(trained_run), str(path), "--html", str(page), "--copies"]
    assert main(argv) == 0
    assert "copied from the training text: 1 span(s)" in capsys.readouterr().err
    html = page.read_text(encoding="utf-8")
    assert "copied from the training text (&ge; 20 chars)" in html
    parsed = _Marked()
    parsed.feed(html)
    assert "".join(parsed.text) == text
    expected = brute_report(text, train)["spans"]
    marked = [False] * len(text)
    for length, start in expected:
        marked[start : start + length] = [True] * length
    assert parsed.marked == marked
    start = text.index(piece)
    assert all(parsed.marked[start : start + len(piece)])
    assert not any(parsed.marked[:5]) and not any(parsed.marked[-5:])

    # without --copies the page has no marks; --copies alone is refused
    assert main(["score", str(trained_run), str(path), "--html", str(page)]) == 0
    assert 'class="copy"' not in page.read_text(encoding="utf-8")
    assert main(["score", str(trained_run), str(path), "--copies"]) == 2
    assert "--copies marks copied spans on the --html page" in capsys.readouterr().err
