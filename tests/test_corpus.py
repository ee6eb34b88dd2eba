"""Corpora: files, folders, globs and named corpora; explicit decoding; one-line errors."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from chargen import corpus as corpus_module
from chargen.corpus import NAMED_CORPORA, list_corpora, load_corpus
from chargen.errors import ConfigError, CorpusError, DecodeError
from tests.conftest import needs_shared


def test_file_folder_and_glob(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("third\n", encoding="utf-8")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    (tmp_path / ".hidden").write_text("secret\n", encoding="utf-8")
    assert load_corpus(str(tmp_path / "a.txt")).text == "first\n"
    folder = load_corpus(str(tmp_path))
    assert folder.text == "first\nsecond\nthird\n"
    assert [Path(f).name for f in folder.files] == ["a.txt", "b.txt", "c.txt"]
    assert load_corpus(str(tmp_path / "*.txt")).text == "first\nsecond\n"


def test_normalisation(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfHello\r\nWORLD\rend")
    assert load_corpus(str(path)).text == "Hello\nWORLD\nend"
    assert load_corpus(str(path), lowercase=True).text == "hello\nworld\nend"


def test_invalid_utf8_names_file_offset_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"abc\xe9def")
    with pytest.raises(DecodeError) as info:
        load_corpus(str(path))
    message = str(info.value)
    assert "latin.txt" in message and "offset 3" in message and "--encoding latin-1" in message
    assert "\n" not in message
    assert load_corpus(str(path), encoding="latin-1").text == "abcédef"
    assert load_corpus(str(path), errors="replace").text == "abc\ufffddef"
    with pytest.raises(ConfigError, match="encoding"):
        load_corpus(str(path), encoding="no-such-codec")


def _bad_source(folder: Path, kind: str) -> Path:
    """A source of ``kind`` that load_corpus must refuse."""
    contents = {"empty.txt": b"", "ws.txt": b" \n\t\n", "bin.dat": b"ab\x00cd"}
    if kind in contents:
        (folder / kind).write_bytes(contents[kind])
    elif kind == "emptydir":
        (folder / kind).mkdir()
    return folder / kind


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing.txt", "no such file"),
        ("empty.txt", "empty"),
        ("ws.txt", "whitespace"),
        ("bin.dat", "binary"),
        ("emptydir", "no text files"),
        ("*.nomatch", "matches no file"),
    ],
)
def test_bad_sources(tmp_path: Path, kind: str, match: str) -> None:
    with pytest.raises(CorpusError, match=match) as info:
        load_corpus(str(_bad_source(tmp_path, kind)))
    assert "\n" not in str(info.value)


def test_python_docs_is_offline_and_large() -> None:
    text = load_corpus("python-docs").text
    assert len(text) > 100_000 and "\r" not in text


def test_python_stdlib_is_large() -> None:
    corpus = load_corpus("python-stdlib")
    assert len(corpus.text) > 5_000_000 and len(corpus.files) > 100


def test_list_corpora_names_all_four() -> None:
    names = [entry["name"] for entry in list_corpora()]
    assert names == ["python-docs", "python-stdlib", "nietzsche", "tinyshakespeare"]
    assert all(entry["origin"] for entry in list_corpora())


def test_nietzsche_from_the_shared_data_dir() -> None:
    folder = needs_shared("nietzsche.txt").parent
    corpus = load_corpus("nietzsche", data_dir=str(folder))
    assert len(corpus.text) == 600_902 and len(set(corpus.text)) == 59


def test_checksum_mismatch_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "nietzsche.txt").write_text("not the book\n")
    with pytest.raises(CorpusError, match="checksum"):
        load_corpus("nietzsche", data_dir=str(tmp_path))


class _FakeResponse(io.BytesIO):
    headers = {"Content-Length": "0"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("good", [True, False])
def test_download_verifies_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good: bool
) -> None:
    payload = b"to be or not to be\n" * 10
    digest = hashlib.sha256(payload).hexdigest()
    fake = corpus_module.NamedCorpus(
        "fake",
        "test corpus",
        url="https://example.invalid/fake.txt",
        sha256=digest if good else "0" * 64,
        filename="fake.txt",
    )
    monkeypatch.setitem(NAMED_CORPORA, "fake", fake)
    monkeypatch.setenv("CHARGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHARGEN_DATA", raising=False)
    monkeypatch.setattr(
        corpus_module.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(payload)
    )
    if good:
        assert load_corpus("fake", progress=False).text == payload.decode()
        assert (tmp_path / "cache" / "fake.txt").read_bytes() == payload
    else:
        with pytest.raises(CorpusError, match="checksum"):
            load_corpus("fake", progress=False)
        assert list((tmp_path / "cache").iterdir()) == []


def test_no_network_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEN_CACHE", str(tmp_path))
    monkeypatch.delenv("CHARGEN_DATA", raising=False)

    def offline(url, timeout):
        raise corpus_module.urllib.error.URLError("no network")

    monkeypatch.setattr(corpus_module.urllib.request, "urlopen", offline)
    with pytest.raises(CorpusError, match="--data-dir"):
        load_corpus("tinyshakespeare", progress=False)
