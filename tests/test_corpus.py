"""Corpora: files, folders, globs and named corpora; explicit decoding; one-line errors."""

from __future__ import annotations

import hashlib
import io
import os
import sysconfig
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chargen.corpus import (
    NAMED_CORPORA,
    NamedCorpus,
    cache_dir,
    list_corpora,
    load_corpus,
    resolve_data_dir,
)
from chargen.errors import ConfigError, CorpusError, DecodeError
from tests.conftest import needs_shared

NIETZSCHE_SHA256 = "769ce58bf021ed0fa86232eac03867ccd275181a94caafeef56b70b16ec741ff"


@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's cache or data dir, or reaches the network."""
    monkeypatch.setenv("CHARGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHARGEN_DATA", raising=False)

    def no_network(url: str, timeout: float) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --- files, folders, globs ----------------------------------------------------------------


def _tree(root: Path) -> Path:
    """a.txt, b.txt (no final newline), sub/c.txt, a binary file and hidden ones."""
    root.mkdir(exist_ok=True)
    (root / "b.txt").write_text("second", encoding="utf-8")
    (root / "a.txt").write_text("first\n", encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "c.txt").write_text("third\n", encoding="utf-8")
    (root / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / ".hidden").write_text("secret\n", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("secret too\n", encoding="utf-8")
    return root


def test_single_file_is_kept_as_is(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("no final newline", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.text == "no final newline"
    assert corpus.name == str(path) and corpus.files == (str(path),)


def test_folder_sorted_recursive_binary_and_hidden_skipped(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    corpus = load_corpus(str(root))
    assert corpus.text == "first\nsecond\nthird\n"  # each file ends with a newline
    assert [Path(f).relative_to(root).as_posix() for f in corpus.files] == [
        "a.txt",
        "b.txt",
        "sub/c.txt",
    ]


def test_folder_order_is_by_relative_path(tmp_path: Path) -> None:
    for name in ["b/1.txt", "a/2.txt", "a.txt", "B.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name + "\n", encoding="utf-8")
    assert load_corpus(str(tmp_path)).text == "B.txt\na.txt\na/2.txt\nb/1.txt\n"


def test_glob_sorted_and_recursive(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    assert load_corpus(str(root / "*.txt")).text == "first\nsecond\n"
    assert load_corpus(str(root / "**" / "*.txt")).text == "first\nsecond\nthird\n"
    assert load_corpus(str(root / "[ab].txt")).files == (str(root / "a.txt"), str(root / "b.txt"))
    # binary matches are skipped as in folders
    assert load_corpus(str(root / "*")).text == "first\nsecond\n"


def test_existing_path_with_glob_characters_is_a_path(tmp_path: Path) -> None:
    path = tmp_path / "notes[1].txt"
    path.write_text("literal\n", encoding="utf-8")
    assert load_corpus(str(path)).text == "literal\n"


# --- normalisation and decoding -----------------------------------------------------------


def test_bom_crlf_and_lone_cr(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfHello\r\nWORLD\rend\r\n")
    assert load_corpus(str(path)).text == "Hello\nWORLD\nend\n"
    assert load_corpus(str(path), lowercase=True).text == "hello\nworld\nend\n"


def test_each_file_loses_its_bom(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes("\ufeffΑλφα\r\n".encode())
    (tmp_path / "b.txt").write_bytes("\ufeffΒήτα".encode())
    text = load_corpus(str(tmp_path), lowercase=True).text
    assert text == "αλφα\nβήτα\n" and "\ufeff" not in text


def test_invalid_utf8_names_file_offset_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"x" * 10_000 + b"abc\xe9def")
    with pytest.raises(DecodeError) as info:
        load_corpus(str(path))
    message = _one_line(info)
    assert str(path) in message and "0xe9" in message and "offset 10003" in message
    assert "--encoding latin-1" in message and "--errors replace" in message
    assert load_corpus(str(path), encoding="latin-1").text.endswith("abcédef")
    assert load_corpus(str(path), errors="replace").text.endswith("abc\ufffddef")
    assert load_corpus(str(path), errors="ignore").text.endswith("abcdef")


def test_decode_error_in_a_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"ok\xff")
    with pytest.raises(DecodeError, match=r"bad\.txt: byte 0xff at offset 2"):
        load_corpus(str(tmp_path))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoding": "no-such-codec"}, "--encoding 'no-such-codec'"),
        ({"errors": "loud"}, "--errors"),
    ],
)
def test_bad_decoding_options_are_config_errors(
    tmp_path: Path, kwargs: dict[str, str], match: str
) -> None:
    path = tmp_path / "t.txt"
    path.write_text("text\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as info:
        load_corpus(str(path), **kwargs)
    _one_line(info)


def test_utf16_is_not_taken_for_binary(tmp_path: Path) -> None:
    path = tmp_path / "windows.txt"
    path.write_bytes("héllo\r\nwörld\r\n".encode("utf-16"))  # BOM + NUL bytes everywhere
    assert load_corpus(str(path), encoding="utf-16").text == "héllo\nwörld\n"
    with pytest.raises(CorpusError, match="binary"):
        load_corpus(str(path))


# --- one-line errors ----------------------------------------------------------------------


def _bad_source(folder: Path, kind: str) -> str:
    """A source of ``kind`` that load_corpus must refuse."""
    contents = {"empty.txt": b"", "ws.txt": b" \r\n\t\n", "bin.dat": b"ab\x00cd"}
    if kind in contents:
        (folder / kind).write_bytes(contents[kind])
    elif kind == "emptydir":
        (folder / kind).mkdir()
    elif kind == "bindir":
        (folder / kind).mkdir()
        (folder / kind / "x.bin").write_bytes(b"\x00\x01")
        (folder / kind / ".notes").write_text("hidden\n", encoding="utf-8")
    elif kind == "blankdir":
        (folder / kind).mkdir()
        (folder / kind / "a.txt").write_bytes(b"")
        (folder / kind / "b.txt").write_bytes(b"\n\n")
    elif kind == "*.bin":
        (folder / "x.bin").write_bytes(b"\x00")
    return str(folder / kind)


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing.txt", "no such file or folder"),
        ("empty.txt", "empty"),
        ("ws.txt", "whitespace only"),
        ("bin.dat", "binary"),
        ("emptydir", "no text files"),
        ("bindir", "no text files"),
        ("blankdir", "whitespace only"),
        ("*.nomatch", "matches no file"),
        ("*.bin", "only binary files"),
    ],
)
def test_bad_sources(tmp_path: Path, kind: str, match: str) -> None:
    source = _bad_source(tmp_path, kind)
    with pytest.raises(CorpusError, match=match) as info:
        load_corpus(source)
    assert source in _one_line(info)


def test_unknown_name_lists_the_corpora() -> None:
    with pytest.raises(CorpusError) as info:
        load_corpus("no-such-corpus")
    message = _one_line(info)
    assert all(name in message for name in NAMED_CORPORA)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.txt"
    path.write_text("secret\n", encoding="utf-8")
    real_open = os.open

    def denied(name: Any, *args: Any, **kwargs: Any) -> int:  # root ignores chmod: deny the open
        if Path(name) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(CorpusError, match="permission denied") as info:
        load_corpus(str(path))
    assert str(path) in _one_line(info)


def test_memory_stays_near_two_copies(tmp_path: Path) -> None:
    """Four 1 MB files joined and lower-cased: peak traced memory stays near two texts."""
    for i in range(4):
        (tmp_path / f"{i}.txt").write_bytes(
            b"".join(b"line %d of file\r\n" % n for n in range(60_000))
        )
    tracemalloc.start()
    try:
        text = load_corpus(str(tmp_path), lowercase=True).text
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(text) > 3_500_000 and "\r" not in text
    assert peak < 2.5 * len(text)  # parts + joined text (was 4.3x before parts were freed)


# --- named corpora ------------------------------------------------------------------------


def test_python_docs_is_offline_and_exact() -> None:
    from pydoc_data.topics import topics

    corpus = load_corpus("python-docs")
    expected = "\n\n".join(topics[k] for k in sorted(topics)).replace("\r\n", "\n")
    assert corpus.text == expected and len(corpus.text) > 100_000
    assert corpus.name == "python-docs" and corpus.files == ()


def test_python_stdlib_is_large_sorted_and_without_site_packages() -> None:
    corpus = load_corpus("python-stdlib", progress=False)
    assert len(corpus.text) > 5_000_000 and len(corpus.files) > 100
    root = Path(sysconfig.get_paths()["stdlib"])
    rel = [Path(f).relative_to(root).as_posix() for f in corpus.files]
    assert rel == sorted(rel) and all(r.endswith(".py") for r in rel)
    assert not any("site-packages" in r for r in rel)
    assert "\r" not in corpus.text
    with pytest.raises(ConfigError, match="--encoding does not apply"):
        load_corpus("python-stdlib", encoding="latin-1")


def test_list_corpora_names_all_four(tmp_path: Path) -> None:
    entries = list_corpora()
    assert [e["name"] for e in entries] == [
        "python-docs",
        "python-stdlib",
        "nietzsche",
        "tinyshakespeare",
    ]
    assert all(e["description"] and e["origin"] for e in entries)
    origins = {e["name"]: e["origin"] for e in entries}
    assert origins["nietzsche"].startswith("https://")  # nothing local: where it comes from
    (tmp_path / "nietzsche.txt").write_text("x")
    origins = {e["name"]: e["origin"] for e in list_corpora(str(tmp_path))}
    assert origins["nietzsche"] == str(tmp_path / "nietzsche.txt")


def test_data_dir_and_cache_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_data_dir(None) is None
    monkeypatch.setenv("CHARGEN_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("CHARGEN_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "chargen"


def test_nietzsche_from_the_shared_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = needs_shared("nietzsche.txt").parent
    corpus = load_corpus("nietzsche", data_dir=str(folder), progress=False)
    assert len(corpus.text) == 600_902 and len(set(corpus.text)) == 59  # latin-1 by default
    assert corpus.files == (str(folder / "nietzsche.txt"),)
    monkeypatch.setenv("CHARGEN_DATA", str(folder))
    assert load_corpus("nietzsche", progress=False).text == corpus.text
    with pytest.raises(DecodeError) as info:
        load_corpus("nietzsche", encoding="utf-8")
    message = _one_line(info)
    assert "nietzsche.txt: byte 0xe3 at offset 394533" in message
    assert "--encoding latin-1" in message


def test_checksum_mismatch_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "nietzsche.txt").write_text("not the book\n")
    with pytest.raises(CorpusError, match="checksum") as info:
        load_corpus("nietzsche", data_dir=str(tmp_path))
    assert str(tmp_path / "nietzsche.txt") in _one_line(info)


def test_bad_encoding_is_refused_before_any_download() -> None:
    with pytest.raises(ConfigError, match="encoding"):
        load_corpus("nietzsche", encoding="no-such-codec")


class _FakeResponse(io.BytesIO):
    """What urlopen returns, serving bytes from memory."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _serve(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> list[str]:
    """Make urlopen serve ``payload``; return the list of URLs it was asked for."""
    asked: list[str] = []

    def urlopen(url: str, timeout: float) -> _FakeResponse:
        asked.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def _fake_corpus(monkeypatch: pytest.MonkeyPatch, payload: bytes, good: bool) -> NamedCorpus:
    fake = NamedCorpus(
        "fake",
        "test corpus",
        url="https://example.invalid/fake.txt",
        sha256=hashlib.sha256(payload).hexdigest() if good else "0" * 64,
        filename="fake.txt",
    )
    monkeypatch.setitem(NAMED_CORPORA, "fake", fake)
    return fake


def test_download_writes_the_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = "to be or not to be\r\nthat is the question ✓\n".encode() * 10
    _fake_corpus(monkeypatch, payload, good=True)
    asked = _serve(monkeypatch, payload)
    corpus = load_corpus("fake", progress=False)
    assert corpus.text == payload.decode().replace("\r\n", "\n")
    assert (tmp_path / "cache" / "fake.txt").read_bytes() == payload
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["fake.txt"]  # no temporaries
    assert load_corpus("fake", progress=False).text == corpus.text
    assert asked == ["https://example.invalid/fake.txt"]  # the second load used the cache


def test_download_with_wrong_checksum_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"tampered\n"
    _fake_corpus(monkeypatch, payload, good=False)
    _serve(monkeypatch, payload)
    with pytest.raises(CorpusError, match="checksum") as info:
        load_corpus("fake", progress=False)
    _one_line(info)
    assert list((tmp_path / "cache").iterdir()) == []


def test_damaged_cache_is_downloaded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"the real text\n"
    _fake_corpus(monkeypatch, payload, good=True)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fake.txt").write_bytes(b"truncated")
    asked = _serve(monkeypatch, payload)
    assert load_corpus("fake", progress=False).text == "the real text\n"
    assert len(asked) == 1 and (tmp_path / "cache" / "fake.txt").read_bytes() == payload


def test_real_nietzsche_entry_downloads_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = needs_shared("nietzsche.txt").read_bytes()
    assert hashlib.sha256(payload).hexdigest() == NIETZSCHE_SHA256
    asked = _serve(monkeypatch, payload)
    corpus = load_corpus("nietzsche", progress=False)
    assert asked == [NAMED_CORPORA["nietzsche"].url]
    assert corpus.files == (str(tmp_path / "cache" / "nietzsche.txt"),)
    assert len(corpus.text) == 600_902 and len(set(corpus.text)) == 59
    _serve(monkeypatch, payload[:-1])  # a damaged cache and a truncated download: refused
    (tmp_path / "cache" / "nietzsche.txt").write_bytes(payload[:-1])
    with pytest.raises(CorpusError, match="checksum"):
        load_corpus("nietzsche", progress=False)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["nietzsche.txt"]


@pytest.mark.parametrize(
    "failure",
    [
        lambda: urllib.error.URLError("no network"),
        lambda: TimeoutError("timed out"),
        lambda: ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_download_failure_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Callable[[], Exception]
) -> None:
    def urlopen(url: str, timeout: float) -> None:
        raise failure()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    for name in ("nietzsche", "tinyshakespeare"):
        with pytest.raises(CorpusError) as info:
            load_corpus(name, data_dir=str(tmp_path / "empty"), progress=False)
        message = _one_line(info)
        filename = NAMED_CORPORA[name].filename
        assert f"--data-dir DIR holding {filename}" in message and "CHARGEN_DATA" in message
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []
