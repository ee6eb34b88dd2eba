"""``chargen prepare --lines``: the ids a ``--lines`` run would make of the raw list, streamed.

The oracle is ``lines_text(items_of(text))``, the text ``train --lines`` tokenises; the
reader's chunks are made tiny so items cross chunk edges (and multi-byte characters cross
block edges) on every example.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargen import prepare as prepare_module
from chargen.cli import main
from chargen.corpus import load_corpus
from chargen.errors import CorpusError
from chargen.lines import items_of, lines_text
from chargen.prepare import _line_items, open_prepared, prepare
from chargen.tokenizer import build_tokenizer
from tests.conftest import run_chargen

# white space str.strip removes (ASCII, Unicode spaces, separators) and characters it keeps
SPACES = " \t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2000\u2028\u2029\u3000"
LETTERS = "abzé ßжλ中😀-'."
ENDINGS = ("\n", "\r\n", "\r")
TINY_RUN = [
    "--embed-dim",
    "16",
    "--hidden-size",
    "32",
    "--batch-size",
    "8",
    "--steps",
    "10",
    "--threads",
    "1",
    "--sample-length",
    "0",
]


def expected_text(text: str) -> str:
    """What ``train --lines`` tokenises: the list normalised by ``lines.py`` (empty: no items)."""
    items = items_of(text)
    return lines_text(items) if items else ""


@given(
    st.one_of(st.text(), st.text(SPACES + LETTERS + "\n")),
    st.lists(st.integers(0, 200), max_size=12),
)
def test_line_items_streams_what_items_of_gives(text: str, cuts: list[int]) -> None:
    """Any text, cut anywhere: lines split only at "\\n", stripped of all Unicode space."""
    edges = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    chunks = [text[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    assert "".join(_line_items(iter(chunks))) == expected_text(text)


pad = st.text(alphabet=SPACES, max_size=3)
item = st.text(alphabet=LETTERS, min_size=1, max_size=40).filter(lambda s: s.strip())
line = st.one_of(st.tuples(pad, item, pad).map("".join), pad)  # an item or a blank line
a_list = st.lists(st.tuples(line, st.sampled_from(ENDINGS)), min_size=1, max_size=30).filter(
    lambda rows: any(row.strip() for row, _ in rows)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=a_list,
    last_ending=st.booleans(),
    bom=st.booleans(),
    lowercase=st.booleans(),
    chunk=st.sampled_from([1, 3, 7, 16]),
)
def test_prepared_ids_are_the_lines_text_encoded(
    monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[str, str]],
    last_ending: bool,
    bom: bool,
    lowercase: bool,
    chunk: int,
) -> None:
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", chunk)  # items 40 chars long cross chunks
    raw = "".join(row + ending for row, ending in rows)
    if not last_ending:
        raw = raw.rstrip("\r\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.txt"
        path.write_bytes((("\ufeff" if bom else "") + raw).encode("utf-8"))
        meta = prepare(
            str(path), Path(tmp) / "data", lowercase=lowercase, progress=False, lines=True
        )
        data = open_prepared(Path(tmp) / "data")
        normalised = raw.replace("\r\n", "\n").replace("\r", "\n")
        text = expected_text(normalised.lower() if lowercase else normalised)
        # the same text train --lines makes of the file (load_corpus, then lines.py)
        assert text == lines_text(items_of(load_corpus(str(path), lowercase=lowercase).text))
        assert np.array_equal(np.asarray(data.ids), data.tokenizer.encode(text))
        assert data.tokenizer.vocab == build_tokenizer("char", text).vocab
        assert meta["lines"] is True and data.meta["lines"] is True
        assert meta["items"] == len(items_of(text)) and meta["chars"] == len(text)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_a_folder_of_lists_for_every_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Several files: a file's last line ends with it even without a newline."""
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 5)
    files = tmp_path / "src"
    files.mkdir()
    (files / "a.txt").write_bytes("\ufeff  Émile Zola \r\n\r\n\tthe old man\r\nlast of a".encode())
    (files / "b.txt").write_text("first of b\n \u3000\nnaïve café  \n", encoding="utf-8")
    meta = prepare(str(files), tmp_path / "data", tokenizer=kind, progress=False, lines=True)
    data = open_prepared(tmp_path / "data")
    text = lines_text(items_of(load_corpus(str(files)).text))
    assert text == "\nÉmile Zola\nthe old man\nlast of a\nfirst of b\nnaïve café\n"
    tok = build_tokenizer(kind, text)
    assert data.tokenizer.to_dict() == tok.to_dict()
    assert np.array_equal(np.asarray(data.ids), tok.encode(text))
    assert meta["files"] == 2 and meta["items"] == 5


def test_without_lines_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("  emma \n\nolivia\n", encoding="utf-8")
    meta = prepare(str(path), tmp_path / "data", progress=False)
    data = open_prepared(tmp_path / "data")
    assert meta["lines"] is False and "items" not in meta
    assert data.tokenizer.decode(np.asarray(data.ids)) == "  emma \n\nolivia\n"
    (tmp_path / "blank.txt").write_text(" \n\t\n\u3000\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no non-empty line"):
        prepare(str(tmp_path / "blank.txt"), tmp_path / "d2", progress=False, lines=True)


def make_list(tmp_path: Path) -> Path:
    """200 names, some padded with spaces or tabs, CRLF endings, blank lines among them."""
    rng = random.Random(0)
    names: set[str] = set()
    while len(names) < 200:
        names.add("".join(rng.choice("abdeiklmnorstuvyz") for _ in range(rng.randint(3, 9))))
    rows = [f" {n}\t" if i % 3 == 0 else n for i, n in enumerate(sorted(names))]
    rows[50:50] = ["", "   "]
    path = tmp_path / "names.txt"
    path.write_bytes(("\r\n".join(rows) + "\r\n\r\n").encode())
    return path


def evals(run: Path) -> list[float]:
    records = [json.loads(row) for row in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["val_nats_per_char"] for r in records if r.get("kind") == "eval"]


def test_train_lines_on_the_folder_equals_train_lines_on_the_file(tmp_path: Path) -> None:
    source = make_list(tmp_path)
    folder = tmp_path / "data"
    made = run_chargen("prepare", str(source), "--out", str(folder), "--lines", "--quiet")
    assert made.returncode == 0, made.stderr
    assert ", 200 items," in made.stdout and made.stdout.rstrip().endswith("--lines")
    runs = {}
    for name, src in (("prepared", folder), ("raw", source)):
        runs[name] = tmp_path / name
        result = run_chargen("train", str(src), "--lines", "--out", str(runs[name]), *TINY_RUN)
        assert result.returncode == 0, result.stderr
        header = next(line for line in result.stdout.splitlines() if line.startswith("param"))
        assert "items: 180 train, 20 val (--lines)" in header, header
    assert evals(runs["prepared"]) and evals(runs["prepared"]) == pytest.approx(
        evals(runs["raw"]), rel=1e-6
    )
    scores = []  # each run scored on the other's source: eval reads either the same way
    for run, src in ((runs["prepared"], source), (runs["raw"], folder)):
        result = run_chargen("eval", str(run), str(src), "--json")
        assert result.returncode == 0, result.stderr
        scores.append(json.loads(result.stdout))
    assert [s["scored"].split(" of ")[0] for s in scores] == ["the 20 validation items"] * 2
    assert scores[0]["chars"] == scores[1]["chars"]
    assert scores[0]["nats_per_char"] == pytest.approx(scores[1]["nats_per_char"], rel=1e-6)
    assert scores[0]["nats_per_char"] == pytest.approx(evals(runs["prepared"])[-1], rel=1e-5)


def test_data_prepared_the_other_way_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "plain.txt"  # no white space but the newlines: one vocabulary either way
    source.write_text("\n".join(f"item{i % 7}x{i}" for i in range(60)) + "\n", encoding="utf-8")
    for flags, out in ((["--lines"], "listed"), ([], "plain")):
        assert main(["prepare", str(source), "--out", str(tmp_path / out), "--quiet", *flags]) == 0
    run = tmp_path / "run"
    assert main(["train", str(source), "--lines", "--out", str(run), *TINY_RUN]) == 0
    refused = tmp_path / "refused"
    cases = [
        (["train", str(tmp_path / "plain"), "--lines", "--out", str(refused)], "without --lines"),
        (["train", str(tmp_path / "listed"), "--out", str(refused)], "prepared with --lines"),
        (["eval", str(run), str(tmp_path / "plain")], "prepared without --lines"),
        (["prepare", str(source), "--out", str(refused), "--lines", "--novelty-index"], "prose"),
    ]
    for args, said in cases:
        capsys.readouterr()
        assert main([*args, *(TINY_RUN if args[0] == "train" else [])]) == 2, args
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
        assert not refused.exists()
