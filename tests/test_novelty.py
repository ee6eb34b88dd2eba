"""Novelty: exact item labels, and the copied-span finder against a brute-force oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen.errors import ConfigError, CorpusError
from chargen.novelty import CorpusIndex, ItemIndex, Span
from chargen.tokenizer import CharTokenizer

# --------------------------------------------------------------------------- oracle


def brute_lengths(text: str, corpus: str) -> list[int]:
    """For each i, the longest prefix of text[i:] found in corpus by ``in``."""
    out = []
    for i in range(len(text)):
        length = 0
        while i + length < len(text) and text[i : i + length + 1] in corpus:
            length += 1
        out.append(length)
    return out


def brute_maximal(text: str, corpus: str, min_span: int) -> set[tuple[int, int]]:
    """Every (length, start) with text[start:start+length] in corpus and not extendable."""
    found = set()
    for i in range(len(text)):
        for j in range(i + min_span, len(text) + 1):
            if text[i:j] not in corpus:
                continue
            left = i > 0 and text[i - 1 : j] in corpus
            right = j < len(text) and text[i : j + 1] in corpus
            if not left and not right:
                found.add((j - i, i))
    return found


def check_span(span: Span, text: str, corpus: str) -> None:
    piece = text[span.text_offset : span.text_offset + span.length]
    assert len(piece) == span.length
    assert corpus[span.corpus_offset : span.corpus_offset + span.length] == piece


def check_against_oracle(index: CorpusIndex, corpus: str, text: str, min_span: int) -> None:
    expected = brute_lengths(text, corpus)
    lengths, _ = index.matching_statistics(text)
    assert lengths == expected

    longest = index.longest_copy(text)
    best = max(expected, default=0)
    assert longest.length == best
    if best:
        assert longest.text_offset == expected.index(best)  # the first of the longest
        check_span(longest, text, corpus)
    else:
        assert longest == Span(0, 0, 0)

    spans = index.copied_spans(text, min_span)
    assert {(s.length, s.text_offset) for s in spans} == brute_maximal(text, corpus, min_span)
    assert [s.text_offset for s in spans] == sorted(s.text_offset for s in spans)
    for span in spans:
        check_span(span, text, corpus)

    report = index.report(text, min_span)
    assert report == {"longest": longest._asdict(), "spans": [s._asdict() for s in spans]}
    json.dumps(report)


# small alphabets make many and long matches; 'z' and '🙂' are rarer, often absent from one side
ALPHABET = "ab é日😀z🙂"
texts = st.text(alphabet=st.sampled_from(ALPHABET), max_size=40)


@settings(max_examples=150, deadline=None)
@given(corpus=st.text(alphabet=st.sampled_from(ALPHABET), max_size=60), text=texts,
       min_span=st.integers(1, 4))  # fmt: skip
def test_spans_match_brute_force(corpus: str, text: str, min_span: int) -> None:
    check_against_oracle(CorpusIndex.build(corpus), corpus, text, min_span)


# 300 distinct CJK characters before the random part force two-byte codes
WIDE = "".join(chr(0x4E00 + k) for k in range(300))


@settings(max_examples=50, deadline=None)
@given(corpus=st.text(alphabet=st.sampled_from(ALPHABET), max_size=50), text=texts,
       wide=st.booleans())  # fmt: skip
def test_two_byte_codes_match_brute_force(corpus: str, text: str, wide: bool) -> None:
    corpus = WIDE + corpus
    if wide:  # characters of the wide part, whose codes have non-zero high and low bytes
        text = text.replace("a", chr(0x4E00 + 299)).replace("b", chr(0x4E00 + 298))
    index = CorpusIndex.build(corpus)
    assert index.codes.dtype == np.dtype(">u2")
    check_against_oracle(index, corpus, text, 2)


def test_four_byte_codes() -> None:
    points = [p for p in range(0x20, 0x20000) if not 0xD800 <= p < 0xE000][:70_000]
    corpus = "".join(map(chr, points)) + "abcab日😀"
    index = CorpusIndex.build(corpus)
    assert index.codes.dtype == np.dtype(">u4")
    text = "xxabcabcab😀日😀" + chr(points[-1]) + "abc"
    check_against_oracle(index, corpus, text, 2)


def test_verbatim_copy_longer_than_the_first_window() -> None:
    rng = np.random.default_rng(0)
    corpus = "".join(rng.choice(list("abcdefgh "), size=5000))
    text = "QQ" + corpus[1000:1700] + "QQ" + corpus[20:90]
    index = CorpusIndex.build(corpus)
    assert index.longest_copy(text) == Span(700, 2, 1000)
    assert [(s.length, s.text_offset) for s in index.copied_spans(text)] == [(700, 2), (70, 704)]


def test_empty_corpus_and_empty_text() -> None:
    empty = CorpusIndex.build("")
    assert empty.longest_copy("abc") == Span(0, 0, 0)
    assert empty.copied_spans("abc", 1) == []
    index = CorpusIndex.build("abc")
    assert index.longest_copy("") == Span(0, 0, 0)
    assert index.report("", 1) == {"longest": Span(0, 0, 0)._asdict(), "spans": []}
    with pytest.raises(ConfigError):
        index.copied_spans("abc", 0)


def test_lone_surrogates() -> None:
    corpus = "ab\udc80cd"
    check_against_oracle(CorpusIndex.build(corpus), corpus, "xb\udc80cx\udc80", 1)


def test_from_ids_matches_build() -> None:
    corpus = "the cat sat on the mat; le chat était là. 日本"
    tok = CharTokenizer(["<unk>", *sorted(set(corpus) - {"é"})], unk_id=0)  # 'é' is unknown
    ids = np.asarray(tok.encode(corpus))
    index = CorpusIndex.from_ids(ids, tok.vocab)
    text = "a cat sat on the mat, le chat était là"
    # the corpus as the tokenizer sees it: 'é' became <unk>, which never matches
    seen = corpus.replace("é", "\0")
    check_against_oracle(index, seen, text, 3)
    with pytest.raises(CorpusError):
        CorpusIndex.from_ids(np.array([0, 99]), tok.vocab)


# --------------------------------------------------------------------------- files


def test_save_load_round_trip_with_mmap(tmp_path) -> None:
    corpus = "It was the best of times, it was the worst of times. 日本語 é😀 " * 3
    index = CorpusIndex.build(corpus + "".join(chr(0x4E00 + k) for k in range(300)))
    text = "it was the worst of days, the best of times. 日本 😀"
    index.save(tmp_path / "novelty")
    assert sorted(p.name for p in (tmp_path / "novelty").iterdir()) == [
        "codes.npy", "meta.json", "sa.npy",
    ]  # fmt: skip
    loaded = CorpusIndex.load(tmp_path / "novelty")
    assert isinstance(loaded.codes, np.memmap) and isinstance(loaded.suffixes, np.memmap)
    assert loaded.alphabet == index.alphabet
    np.testing.assert_array_equal(loaded.suffixes, index.suffixes)
    assert loaded.report(text, 5) == index.report(text, 5)
    in_memory = CorpusIndex.load(tmp_path / "novelty", mmap=False)
    assert not isinstance(in_memory.codes, np.memmap)
    assert in_memory.report(text, 5) == index.report(text, 5)
    index.save(tmp_path / "novelty")  # overwriting works
    assert not list((tmp_path / "novelty").glob(".*.tmp"))


def test_load_rejects_missing_and_damaged_index(tmp_path) -> None:
    with pytest.raises(CorpusError, match="meta.json"):
        CorpusIndex.load(tmp_path / "nothing")
    folder = tmp_path / "ix"
    CorpusIndex.build("abcabcabd").save(folder)
    np.save(folder / "sa.npy", np.arange(3, dtype=np.int32))
    with pytest.raises(CorpusError, match="sa.npy"):
        CorpusIndex.load(folder)
    (folder / "codes.npy").write_bytes(b"not numpy")
    with pytest.raises(CorpusError, match="codes.npy"):
        CorpusIndex.load(folder)
    (folder / "meta.json").write_text('{"format": "other"}')
    with pytest.raises(CorpusError, match="not a novelty index"):
        CorpusIndex.load(folder)


# --------------------------------------------------------------------------- items


def test_planted_items_are_labelled_exactly() -> None:
    train = ["alice", "bob", "carol", "日本", "shared"]
    val = ["dave", "eve", "shared", "é"]
    index = ItemIndex(train, val)
    assert index.label("alice") == "train"
    assert index.label("日本") == "train"
    assert index.label("shared") == "train"  # in both: train wins
    assert index.label("eve") == "val"
    assert index.label("é") == "val"
    # near misses are new: no normalisation of case, space, accents or prefixes
    for item in ["Alice", "alice ", " bob", "car", "carols", "e\u0301", "", "日"]:
        assert index.label(item) == "new", item
    assert index.labels(["bob", "dave", "zed"]) == ["train", "val", "new"]


@settings(max_examples=50, deadline=None)
@given(
    train=st.sets(st.text(max_size=6), max_size=20),
    val=st.sets(st.text(max_size=6), max_size=20),
    others=st.lists(st.text(max_size=6), max_size=20),
)
def test_labels_agree_with_set_membership(train, val, others) -> None:
    index = ItemIndex(list(train), list(val))
    for item in [*train, *val, *others]:
        expected = "train" if item in train else "val" if item in val else "new"
        assert index.label(item) == expected


def test_summary_line() -> None:
    labels = ["new"] * 271 + ["train"] * 20 + ["val"] * 9
    assert ItemIndex.summary(labels) == "new 271/300 (90.3%), in train 20, in val 9"
    assert ItemIndex.summary(["val", "new", "new"]) == "new 2/3 (66.7%), in train 0, in val 1"
    assert ItemIndex.summary([]) == "new 0/0 (0.0%), in train 0, in val 0"
    with pytest.raises(ValueError):
        ItemIndex.summary(["copied"])
