"""``chargen prepare`` (chargen.prepare): a streaming pass over a source into a data folder
whose ids equal encoding the whole normalised text at once, and which refuses to be read when
it is incomplete or damaged.

(More prepare tests: tests/test_scale.py, a prepared folder trains as its text does;
tests/test_prepare_lines.py, --lines; tests/test_hostile_files.py, interruptions and links.)
"""

from __future__ import annotations

import errno
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chargen import prepare as prepare_module
from chargen.data import split_ids
from chargen.errors import CheckpointError, ConfigError, CorpusError
from chargen.prepare import META, TOKENIZER, TOKENS, is_prepared, open_prepared, prepare
from chargen.tokenizer import UNK, build_tokenizer
from tests.conftest import make_text

# multi-byte characters (2, 3 and 4 bytes), CR / CRLF / LF, a capital whose lower case is
# two code points, and the Greek capital sigma, whose lower case depends on its neighbours
PIECES = ["a", "b", "ab", " ", ",", ".", "\t", "\n", "\r", "\r\n", "é", "€", "𝄞", "İ", "Σ", "Α"]


def normalised(raw: bytes, lowercase: bool) -> str:
    """The text prepare must encode, written out: UTF-8, a leading BOM dropped, CRLF and lone
    CR as LF, lower-cased on request."""
    text = raw.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text.lower() if lowercase else text


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(st.sampled_from(PIECES), min_size=1, max_size=150).map("".join),
    bom=st.booleans(),
    lowercase=st.booleans(),
    kind=st.sampled_from(["char", "word"]),
    chunk=st.integers(1, 17),
)
@example(text="ab\r\ncd", bom=False, lowercase=False, kind="char", chunk=3)  # CR | LF
@example(text="ab\rcd\r", bom=True, lowercase=False, kind="char", chunk=6)  # a CR ends a chunk
@example(text="a𝄞b", bom=True, lowercase=True, kind="word", chunk=5)  # 𝄞 cut after 1 byte
def test_prepare_equals_encoding_the_whole_normalised_text(
    text: str, bom: bool, lowercase: bool, kind: str, chunk: int
) -> None:
    """Chunks of 1-17 bytes cut characters, CRLF pairs and words anywhere: the vocabulary, ids
    and counts are those of the whole text, and the checksum is that of the file's bytes."""
    raw = (("\ufeff" if bom else "") + text).encode("utf-8")
    expected = normalised(raw, lowercase)
    if not expected.strip():
        return  # whitespace only: refused (test_refusals)
    real_chunk = prepare_module.CHUNK_BYTES
    prepare_module.CHUNK_BYTES = chunk
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "t.txt"
            source.write_bytes(raw)
            meta = prepare(
                str(source), Path(tmp) / "data", tokenizer=kind, lowercase=lowercase, progress=False
            )
            data = open_prepared(Path(tmp) / "data")
            tok = build_tokenizer(kind, expected)
            assert data.tokenizer.vocab == tok.vocab
            assert np.array_equal(np.asarray(data.ids, dtype=np.int64), tok.encode(expected))
            assert data.tokenizer.decode(np.asarray(data.ids, dtype=np.int64)) == expected
    finally:
        prepare_module.CHUNK_BYTES = real_chunk
    assert meta == data.meta
    assert meta["tokens"] == len(data.ids) and meta["chars"] == len(expected)
    assert meta["split"] == int(meta["tokens"] * 0.9)
    assert meta["vocab_size"] == len(tok.vocab) and meta["dtype"] == "uint8"
    assert meta["source_sha256"] == hashlib.sha256(raw).hexdigest()
    assert (meta["files"], meta["lowercase"], meta["tokenizer"]) == (1, lowercase, kind)


def test_the_split_is_the_one_training_makes(tmp_path: Path) -> None:
    """meta.json's split is where split_ids cuts the prepared ids for training."""
    source = tmp_path / "t.txt"
    source.write_text(make_text(5003), encoding="utf-8")
    meta = prepare(str(source), tmp_path / "data", progress=False)
    ids = open_prepared(tmp_path / "data").ids
    train, val = split_ids(ids, 0.1)
    assert meta["split"] == len(train) and len(train) + len(val) == meta["tokens"]


def test_max_vocab_keeps_the_most_frequent_symbols(tmp_path: Path) -> None:
    source = tmp_path / "t.txt"
    source.write_text("aaaa bbb cc d\n" * 50, encoding="utf-8")
    prepare(str(source), tmp_path / "data", max_vocab=4, progress=False)
    data = open_prepared(tmp_path / "data")
    text = source.read_text(encoding="utf-8")
    # a 200 times, space 150, b 150; c (100), d and the newline (50) become <unk>
    assert data.tokenizer.vocab[0] == UNK and set(data.tokenizer.vocab[1:]) == {"a", " ", "b"}
    tok = build_tokenizer("char", text, max_vocab=4)
    assert np.array_equal(np.asarray(data.ids, dtype=np.int64), tok.encode(text))


def test_is_prepared_tells_data_folders_from_text(tmp_path: Path, corpus_file: Path) -> None:
    assert not is_prepared(corpus_file)  # a file
    assert not is_prepared(tmp_path / "nothing")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("hello\n", encoding="utf-8")
    assert not is_prepared(tmp_path / "texts")  # a folder of text
    prepare(str(corpus_file), tmp_path / "data", progress=False)
    assert is_prepared(tmp_path / "data")
    half = tmp_path / "half"  # what a prepare killed outright leaves
    half.mkdir()
    (half / ".tokens.bin.0123456789ab.partial").write_bytes(b"\x00" * 10)
    with pytest.raises(CorpusError, match="half-written preparation"):
        is_prepared(half)
    (half / TOKENS).write_bytes(b"\x00" * 10)
    with pytest.raises(CorpusError, match="half-written preparation"):
        is_prepared(half)


def _edit_meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    (folder / META).write_text(json.dumps(meta), encoding="utf-8")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"tokens": None}, "field 'tokens' is missing or invalid"),
        ({"tokens": -1}, "field 'tokens' is missing or invalid"),
        ({"tokens": True}, "field 'tokens' is missing or invalid"),
        ({"vocab_size": 0}, "field 'vocab_size' is missing or invalid"),
        ({"dtype": "float32"}, "field 'dtype' is missing or invalid"),
        ({"source_sha256": None}, "field 'source_sha256' is missing or invalid"),
        ({"format": "other"}, "not a chargen data folder of version 1"),
        ({"version": 2}, "not a chargen data folder of version 1"),
        ({"tokens": 10}, "meta.json promises 10 tokens"),
        ({"vocab_size": 7}, "the folder mixes two preparations"),
        ({"dtype": "uint16"}, "the folder mixes two preparations"),
    ],
)
def test_a_damaged_meta_json_is_one_line_naming_the_file(
    tmp_path: Path, corpus_file: Path, changes: dict, needle: str
) -> None:
    prepare(str(corpus_file), tmp_path / "data", progress=False)
    _edit_meta(tmp_path / "data", **changes)
    with pytest.raises(CorpusError) as info:
        open_prepared(tmp_path / "data")
    message = str(info.value)
    assert needle in message and str(tmp_path / "data") in message and "\n" not in message


def test_unreadable_meta_json_and_a_foreign_tokenizer(tmp_path: Path, corpus_file: Path) -> None:
    prepare(str(corpus_file), tmp_path / "data", progress=False)
    other = tmp_path / "other.txt"
    other.write_text("xyz\n" * 100, encoding="utf-8")
    prepare(str(other), tmp_path / "other", progress=False)
    (tmp_path / "data" / TOKENIZER).write_bytes((tmp_path / "other" / TOKENIZER).read_bytes())
    with pytest.raises(CorpusError, match="mixes two preparations"):
        open_prepared(tmp_path / "data")
    (tmp_path / "data" / META).write_text("{not json", encoding="utf-8")
    with pytest.raises(CorpusError, match="meta.json: unreadable"):
        open_prepared(tmp_path / "data")


def test_overwrite_replaces_the_data_only_once_the_new_data_is_complete(
    tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    prepare(str(corpus_file), data, progress=False)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    other = tmp_path / "other.txt"
    other.write_text(make_text(3000, seed=9).upper(), encoding="utf-8")
    real = prepare_module._encode_into

    def full_disk(sink, *args):
        sink.write(b"\x01" * 100)  # some of the new ids, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_module, "_encode_into", full_disk)
    with pytest.raises(CheckpointError, match="No space left"):
        prepare(str(other), data, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # no temporaries either
    with pytest.raises(CheckpointError, match="No space left"):
        prepare(str(other), tmp_path / "new" / "data", progress=False)
    assert not (tmp_path / "new").exists()  # the folders this call made are gone again
    monkeypatch.setattr(prepare_module, "_encode_into", real)
    meta = prepare(str(other), data, overwrite=True, progress=False)
    assert open_prepared(data).meta == meta and meta["source"] == str(other)
    assert sorted(p.name for p in data.iterdir()) == sorted(before)


def test_refusals(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(ConfigError, match="--tokenizer must be"):
        prepare(str(corpus_file), tmp_path / "d", tokenizer="sentencepiece", progress=False)
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    with pytest.raises(CheckpointError, match="exists and is not a folder"):
        prepare(str(corpus_file), tmp_path / "a-file", progress=False)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        prepare(str(tmp_path / "empty.txt"), tmp_path / "d", progress=False)
    with pytest.raises(ConfigError, match="klingon"):
        prepare(str(corpus_file), tmp_path / "d", encoding="klingon", progress=False)
    assert not (tmp_path / "d").exists()


def test_lowercase_of_a_sigma_at_a_chunk_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "greek.txt"
    source.write_text("ΑΣΑ " * 10, encoding="utf-8")
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 4)  # "ΑΣ" is 4 bytes: a chunk ends there
    prepare(str(source), tmp_path / "data", lowercase=True, progress=False)
    data = open_prepared(tmp_path / "data")
    text = data.tokenizer.decode(np.asarray(data.ids, dtype=np.int64))
    assert text == ("ΑΣΑ " * 10).lower() == "ασα " * 10
