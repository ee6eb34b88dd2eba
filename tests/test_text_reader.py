"""The one text reader (``text_reader.TextReader``) that ``load_corpus`` and ``prepare`` share.

The oracle decodes and normalises each file's whole bytes at once (``bytes.decode``, BOM
dropped, CRLF / CR -> LF, ``str.lower`` of the whole text); the reader reads blocks of 1-17
bytes, so CRLF pairs, multi-byte characters, capital sigmas and length-changing lower cases
(İ -> i̇) fall across block edges on most examples.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chargen import prepare as prepare_module
from chargen import text_reader
from chargen.corpus import ResolvedSource, decode_bytes, load_corpus
from chargen.errors import ConfigError, CorpusError, DecodeError
from chargen.prepare import open_prepared, prepare
from chargen.text_reader import BINARY_PROBE, TextReader
from chargen.tokenizer import build_tokenizer
from tests.conftest import make_text

# CR, LF, BOM, 2-, 3- and 4-byte characters, sigma contexts, a lower case longer than its upper
PIECES = [
    "a",
    "B",
    " ",
    "\n",
    "\r",
    "\r\n",
    "é",
    "ж",
    "中",
    "😀",
    "𝄞",
    "Σ",
    "ΑΣ",
    "İ",
    "\ufeff",
    "\t",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "gb18030"]


def oracle(raw: bytes, encoding: str, errors: str, lowercase: bool) -> str:
    """One file's text the whole-bytes way."""
    text = raw.decode(encoding, errors).removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.lower() if lowercase else text


def read(
    paths: list[Path],
    encoding: str = "utf-8",
    *,
    errors: str = "strict",
    lowercase: bool = False,
    chunk: int = 1 << 20,
    max_word: int | None = None,
) -> tuple[list[str], list[str]]:
    """The reader's chunks and the files it read."""
    resolved = ResolvedSource("t", tuple(paths), encoding)
    reader = TextReader(resolved, errors, lowercase, chunk_bytes=chunk, max_word=max_word)
    chunks = list(reader.chunks())
    return chunks, reader.files


def write(folder: Path, name: str, raw: bytes) -> Path:
    path = folder / name
    path.write_bytes(raw)
    return path


texts = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    text=texts,
    encoding=st.sampled_from(ENCODINGS),
    lowercase=st.booleans(),
    chunk=st.integers(1, 17),
)
@example(text="ab\r\ncd", encoding="utf-8", lowercase=False, chunk=3)  # CR | LF
@example(text="a𝄞b", encoding="utf-8", lowercase=True, chunk=2)  # 𝄞 cut after 1 byte
@example(text="ΑΣ ΑΣΑ", encoding="utf-8", lowercase=True, chunk=4)  # final sigma at an edge
@example(text="\ufeffİİ", encoding="utf-8", lowercase=True, chunk=1)  # İ lower-cases to 2
def test_chunks_join_to_the_whole_text(
    text: str, encoding: str, lowercase: bool, chunk: int
) -> None:
    """Any chunk size: the joined chunks are the whole bytes decoded and normalised at once,
    and no chunk is empty."""
    raw = text.encode(encoding)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "t.txt", raw)
        chunks, files = read([path], encoding, lowercase=lowercase, chunk=chunk)
    assert "".join(chunks) == oracle(raw, encoding, "strict", lowercase)
    assert all(chunks) and files == [str(path)]


@settings(max_examples=60, deadline=None)
@given(text=texts, encoding=st.sampled_from(ENCODINGS), lowercase=st.booleans())
def test_a_stream_is_read_as_a_file_is(text: str, encoding: str, lowercase: bool) -> None:
    """stdin's bytes (``stream_text``) give the text the same bytes in a file give."""
    raw = text.encode(encoding)
    streamed = text_reader.stream_text(raw, "stdin", encoding, "strict", lowercase)
    assert streamed == oracle(raw, encoding, "strict", lowercase)
    with pytest.raises(DecodeError, match="stdin: byte 0xff at offset 1 is not valid utf-8"):
        text_reader.stream_text(b"a\xff", "stdin", "utf-8", "strict", False)


@settings(max_examples=40, deadline=None)
@given(text=texts, chunk=st.integers(1, 9), max_word=st.integers(1, 6))
def test_a_bounded_word_wait_changes_nothing_without_sigma(
    text: str, chunk: int, max_word: int
) -> None:
    """``max_word`` (prepare's bound) lower-cases long words in pieces: the same text unless
    a capital sigma's context is cut, the one context-dependent lower case."""
    text = text.replace("Σ", "S")
    raw = text.encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "t.txt", raw)
        chunks, _ = read([path], lowercase=True, chunk=chunk, max_word=max_word)
    assert "".join(chunks) == oracle(raw, "utf-8", "strict", True)


def test_an_unbounded_word_wait_is_exact_for_sigma(tmp_path: Path) -> None:
    """``load_corpus`` waits for whole words however long, so every sigma gets its context."""
    text = "ΑΣ" * 5000 + " ΑΣ"
    path = write(tmp_path, "t.txt", text.encode("utf-8"))
    chunks, _ = read([path], lowercase=True, chunk=7)
    assert "".join(chunks) == text.lower()
    assert load_corpus(str(path), lowercase=True).text == text.lower()


# undecodable bytes: stray continuation bytes, a lead byte without its tail, invalid lead bytes
BAD = [b"\x80", b"\xc3", b"\xe4\xb8", b"\xff", b"\xed\xa0\x80", b"\xf0\x9d"]


@settings(max_examples=120, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.sampled_from(PIECES).map(lambda s: s.encode("utf-8")), st.sampled_from(BAD)),
        max_size=30,
    ),
    chunk=st.integers(1, 17),
    errors=st.sampled_from(["strict", "replace", "ignore"]),
)
@example(parts=[b"ab", b"\xe4\xb8"], chunk=3, errors="strict")  # truncated at the end of file
def test_undecodable_bytes_as_the_whole_decode_reports_them(
    parts: list[bytes], chunk: int, errors: str
) -> None:
    """Strict: the same one-line DecodeError (file, byte, offset, fix) as decoding the whole
    bytes; replace / ignore: the same text."""
    raw = b"".join(parts)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "t.txt", raw)
        try:
            expected = decode_bytes(raw, str(path), "utf-8", errors)
        except DecodeError as exc:
            with pytest.raises(DecodeError) as info:
                read([path], errors=errors, chunk=chunk)
            assert str(info.value) == str(exc)
            return
        chunks, _ = read([path], errors=errors, chunk=chunk)
    assert "".join(chunks) == oracle(
        expected.encode("utf-8", "surrogatepass"), "utf-8", "strict", False
    )


@pytest.mark.parametrize(
    ("encoding", "raw"),
    [
        ("utf-16", "abc".encode("utf-16") + b"\x00"),  # an odd byte at the end
        ("utf-16-le", "ab".encode("utf-16-le") + b"\x00\xdc" + "cd".encode("utf-16-le")),
        ("gb18030", "中文".encode("gb18030") + b"\xff" + "x".encode("gb18030")),
        ("gb18030", "中文x".encode("gb18030") + b"\x81"),  # a lead byte at the end
        ("shift_jis", "日本".encode("shift_jis") + b"\x81\x20abc"),
        ("cp1252", b"caf\xe9 \x81 x"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 20])
def test_undecodable_bytes_in_other_encodings(
    tmp_path: Path, encoding: str, raw: bytes, chunk: int
) -> None:
    path = write(tmp_path, "t.txt", raw)
    with pytest.raises(DecodeError) as whole:
        decode_bytes(raw, str(path), encoding, "strict")
    with pytest.raises(DecodeError) as info:
        read([path], encoding, chunk=chunk)
    assert str(info.value) == str(whole.value)


@settings(max_examples=40, deadline=None)
@given(files=st.lists(texts, min_size=2, max_size=4), chunk=st.integers(1, 9))
def test_several_files_each_end_with_a_newline(files: list[str], chunk: int) -> None:
    """Each file normalised on its own (its own BOM, its own CR at its end), then given a
    newline when it has text and lacks one; empty files add nothing but are listed."""
    expected = ""
    for text in files:
        part = oracle(text.encode("utf-8"), "utf-8", "strict", False)
        expected += part + ("\n" if part and not part.endswith("\n") else "")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write(Path(tmp), f"{i}.txt", t.encode("utf-8")) for i, t in enumerate(files)]
        chunks, used = read(paths, chunk=chunk)
    assert "".join(chunks) == expected and used == [str(p) for p in paths]


def test_a_built_text_is_normalised_in_chunks() -> None:
    text = "\ufeffΑΣ\r\nΒ\rx" * 50
    for chunk in (1, 2, 3, 1 << 20):
        resolved = ResolvedSource("built", (), "utf-8", text=text)
        reader = TextReader(resolved, lowercase=True, chunk_bytes=chunk, max_word=None)
        assert "".join(reader.chunks()) == oracle(text.encode(), "utf-8", "strict", True)
        assert reader.files == []


def test_undecodable_files_are_left_out_when_the_source_says_so(tmp_path: Path) -> None:
    paths = [
        write(tmp_path, "a.txt", b"one"),
        write(tmp_path, "b.txt", b"\xff"),
        write(tmp_path, "c.txt", b"two\n"),
    ]
    resolved = ResolvedSource("t", tuple(paths), "utf-8", skip_undecodable=True)
    reader = TextReader(resolved, chunk_bytes=1)
    assert "".join(reader.chunks()) == "one\ntwo\n"
    assert reader.files == [str(paths[0]), str(paths[2])]


def test_the_binary_probe_does_not_depend_on_the_chunk_size(tmp_path: Path) -> None:
    """A NUL anywhere in the first ``BINARY_PROBE`` bytes of a lone file: binary, whatever
    the read size (prepare reads 1 MiB, tests far less); UTF-16 text is not binary."""
    raw = b"a" * (BINARY_PROBE - 1) + b"\x00" + b"b" * 10
    path = write(tmp_path, "t.txt", raw)
    for chunk in (1, 100, 1 << 20):
        with pytest.raises(CorpusError, match="looks like a binary file"):
            read([path], chunk=chunk)
    late = write(tmp_path, "late.txt", b"a" * BINARY_PROBE + b"\x00")
    assert "".join(read([late], chunk=3)[0]) == "a" * BINARY_PROBE + "\x00"
    utf16 = write(tmp_path, "u.txt", "héllo\r\n".encode("utf-16"))
    assert "".join(read([utf16], "utf-16", chunk=3)[0]) == "héllo\n"


def test_prepare_reads_utf16_as_load_corpus_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = make_text(2000).replace("\n", "\r\n") + "ünï ΑΣ\r\n"
    path = write(tmp_path, "t.txt", text.encode("utf-16"))
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 7)
    prepare(str(path), tmp_path / "data", encoding="utf-16", lowercase=True, progress=False)
    data = open_prepared(tmp_path / "data")
    expected = load_corpus(str(path), encoding="utf-16", lowercase=True).text
    assert data.tokenizer.decode(np.asarray(data.ids, dtype=np.int64)) == expected


def test_a_read_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError while reading (a failing disk) names the file, as the open's errors do."""
    path = write(tmp_path, "t.txt", b"text\n")

    class Failing(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError(5, "Input/output error")

    @contextlib.contextmanager
    def opened(*args: object) -> Iterator[io.BytesIO]:
        yield Failing()

    monkeypatch.setattr(text_reader, "open_regular", opened)
    with pytest.raises(CorpusError, match=r"t\.txt: cannot read \(Input/output error\)"):
        read([path])


def _registered_kinds() -> list[str]:
    from chargen.tokenizer import TOKENIZERS

    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return [kind for kind in TOKENIZERS if kind != "bpe"]
    return list(TOKENIZERS)


@pytest.mark.parametrize("kind", _registered_kinds())
@pytest.mark.parametrize("chunk", [3, 997])
def test_prepare_equals_load_corpus_then_build_for_every_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, chunk: int
) -> None:
    """Both faces read through the one reader: prepare's ids are ``build_tokenizer(kind,
    text).encode(text)`` of ``load_corpus``'s text, for every registered kind."""
    source = tmp_path / "src"
    source.mkdir()
    for i in range(3):
        text = make_text(1500, seed=i).replace("\n", "\r\n") + "ΑΣ Ünï 中文😀\r"
        write(source, f"{i}.txt", ("\ufeff" + text).encode("utf-8"))
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", chunk)
    meta = prepare(str(source), tmp_path / "data", tokenizer=kind, lowercase=True, progress=False)
    data = open_prepared(tmp_path / "data")
    text = load_corpus(str(source), lowercase=True).text
    tok = build_tokenizer(kind, text)
    assert data.tokenizer.to_dict() == tok.to_dict()
    assert np.array_equal(np.asarray(data.ids, dtype=np.int64), tok.encode(text))
    assert meta["chars"] == len(text) and meta["files"] == 3


def test_prepare_refuses_an_unknown_kind_with_its_message(tmp_path: Path) -> None:
    write(tmp_path, "t.txt", b"text\n")
    with pytest.raises(ConfigError) as info:
        prepare(str(tmp_path / "t.txt"), tmp_path / "data", tokenizer="bytes", progress=False)
    assert str(info.value) == "--tokenizer must be char, word, bpe, got 'bytes'"
