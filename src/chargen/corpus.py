"""Sources to decoded, normalised text.

A source is a file, a folder (its non-hidden files below it, sorted by relative path, files
with NUL bytes skipped), a glob, or a named corpus (``list_corpora``). Decoding is explicit:
strict UTF-8 unless told otherwise; a UTF-8 BOM is dropped; CRLF and lone CR become LF;
``lowercase`` lower-cases. Several files are joined so that each ends with a newline.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import hashlib
import os
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from chargen.errors import ConfigError, CorpusError, DecodeError

BINARY_PROBE = 8192


@dataclass(frozen=True)
class Corpus:
    """Decoded text with where it came from."""

    text: str
    name: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class NamedCorpus:
    """A corpus known by name: built offline, or one downloadable file with a checksum."""

    name: str
    description: str
    encoding: str = "utf-8"
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None
    build: Callable[[], tuple[str, tuple[str, ...]]] | None = None
    list_files: Callable[[], list[Path]] | None = None  # offline files, undecodable ones skipped


def _python_docs() -> tuple[str, tuple[str, ...]]:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics)), ()


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        (
            p
            for p in root.rglob("*.py")
            if "site-packages" not in p.parts and "dist-packages" not in p.parts
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )


NAMED_CORPORA: dict[str, NamedCorpus] = {
    "python-docs": NamedCorpus(
        "python-docs",
        f"Python {sys.version_info.major}.{sys.version_info.minor} documentation topics (pydoc_data), ~465K chars, offline",
        build=_python_docs,
    ),
    "python-stdlib": NamedCorpus(
        "python-stdlib",
        "the running Python's standard-library .py files (tests included, site-packages excluded), tens of MB, offline",
        list_files=_stdlib_files,
    ),
    "nietzsche": NamedCorpus(
        "nietzsche",
        "Nietzsche, Beyond Good and Evil (English, lower-cased): the book's corpus, 600,902 bytes, latin-1",
        encoding="latin-1",
        url="https://s3.amazonaws.com/text-datasets/nietzsche.txt",
        sha256="769ce58bf021ed0fa86232eac03867ccd275181a94caafeef56b70b16ec741ff",
        filename="nietzsche.txt",
    ),
    "tinyshakespeare": NamedCorpus(
        "tinyshakespeare",
        "Tiny Shakespeare from char-rnn (nanoGPT's shakespeare_char), 1,115,394 bytes",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
    ),
}


def resolve_data_dir(data_dir: str | None) -> Path | None:
    """``--data-dir``, else the ``CHARGEN_DATA`` environment variable, else None."""
    chosen = data_dir or os.environ.get("CHARGEN_DATA")
    return Path(chosen) if chosen else None


def cache_dir() -> Path:
    """``CHARGEN_CACHE``, else ``~/.cache/chargen``."""
    return Path(os.environ.get("CHARGEN_CACHE") or Path.home() / ".cache" / "chargen")


def list_corpora(data_dir: str | None = None) -> list[dict[str, str]]:
    """Each named corpus with a description and where it comes from (or lies now)."""
    entries = []
    for corpus in NAMED_CORPORA.values():
        if corpus.build is not None or corpus.list_files is not None:
            origin = "built offline from the running Python"
        else:
            local = _local_copy(corpus, data_dir)
            origin = str(local) if local else f"{corpus.url} (downloaded once into {cache_dir()})"
        entries.append({"name": corpus.name, "description": corpus.description, "origin": origin})
    return entries


def _local_copy(corpus: NamedCorpus, data_dir: str | None) -> Path | None:
    assert corpus.filename is not None
    folder = resolve_data_dir(data_dir)
    if folder is not None and (folder / corpus.filename).is_file():
        return folder / corpus.filename
    cached = cache_dir() / corpus.filename
    return cached if cached.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_named(corpus: NamedCorpus, data_dir: str | None, progress: bool = True) -> Path:
    """Path of a downloadable corpus: from the data dir, the cache, or downloaded once (checked)."""
    assert corpus.filename and corpus.url and corpus.sha256
    folder = resolve_data_dir(data_dir)
    if folder is not None and (folder / corpus.filename).is_file():
        path = folder / corpus.filename
        if _sha256(path) != corpus.sha256:
            raise CorpusError(f"{path}: checksum does not match the published {corpus.name} corpus")
        return path
    cached = cache_dir() / corpus.filename
    if cached.is_file() and _sha256(cached) == corpus.sha256:
        return cached
    return _download(corpus, cached, progress)


def _download(corpus: NamedCorpus, target: Path, progress: bool) -> Path:
    assert corpus.url and corpus.sha256
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise CorpusError(
            f"cannot write the cache folder {target.parent}: {exc.strerror or exc}"
        ) from None
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(corpus.url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"downloading {corpus.name}",
                disable=not progress,
                file=sys.stderr,
            ) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if digest.hexdigest() != corpus.sha256:
            raise CorpusError(
                f"downloaded {corpus.name} from {corpus.url}, but its checksum does not match; not kept"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _unlink(tmp)
        raise CorpusError(
            f"cannot download {corpus.name} ({getattr(exc, 'reason', exc)}); pass --data-dir DIR holding "
            f"{corpus.filename} or set CHARGEN_DATA"
        ) from None
    except BaseException:
        _unlink(tmp)
        raise
    return target


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _normalise(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _join(parts: list[str]) -> str:
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts if p)


def decode_bytes(data: bytes, path: str, encoding: str, errors: str) -> str:
    """Decode with a one-line DecodeError naming the file, the byte offset and the fix."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not an encoding Python knows") from None
    if errors not in ("strict", "replace", "ignore"):
        raise ConfigError(f"--errors must be strict, replace or ignore, got {errors!r}")
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        raise DecodeError(
            f"{path}: byte 0x{byte:02x} at offset {exc.start} is not valid {encoding}; "
            f"pass --encoding latin-1 (or the file's encoding) or --errors replace"
        ) from None


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:BINARY_PROBE]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a folder") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _folder_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(BINARY_PROBE)
        except OSError:
            continue
        if not _looks_binary(head):
            files.append(path)
    if not files:
        raise CorpusError(f"{folder}: the folder holds no text files")
    return files


def _is_glob(source: str) -> bool:
    return any(ch in source for ch in "*?[") and not Path(source).exists()


@dataclass(frozen=True)
class ResolvedSource:
    """What a source stands for: files to read in order, or a text built in memory."""

    name: str
    paths: tuple[Path, ...]
    encoding: str
    text: str | None = None
    skip_undecodable: bool = False  # python-stdlib: a file that fails to decode is left out


def resolve_source(
    source: str, *, encoding: str | None = None, data_dir: str | None = None, progress: bool = True
) -> ResolvedSource:
    """Resolve a file, folder, glob or corpus name without reading the text yet."""
    if source in NAMED_CORPORA and not Path(source).exists():
        named = NAMED_CORPORA[source]
        if named.build is not None or named.list_files is not None:
            if encoding not in (None, "utf-8"):
                raise ConfigError(
                    f"{source} is built from Python's own text; --encoding does not apply"
                )
            if named.build is not None:
                text, _ = named.build()
                return ResolvedSource(source, (), "utf-8", text=text)
            assert named.list_files is not None
            return ResolvedSource(source, tuple(named.list_files()), "utf-8", skip_undecodable=True)
        path = fetch_named(named, data_dir, progress)
        return ResolvedSource(source, (path,), encoding or named.encoding)
    if _is_glob(source):
        paths = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not paths:
            raise CorpusError(f"{source}: the pattern matches no file")
        return ResolvedSource(source, tuple(paths), encoding or "utf-8")
    path = Path(source)
    if not path.exists():
        known = ", ".join(NAMED_CORPORA)
        raise CorpusError(f"{source}: no such file or folder, and not a corpus name ({known})")
    paths = _folder_files(path) if path.is_dir() else [path]
    return ResolvedSource(source, tuple(paths), encoding or "utf-8")


def load_corpus(
    source: str,
    *,
    encoding: str | None = None,
    errors: str = "strict",
    lowercase: bool = False,
    data_dir: str | None = None,
    progress: bool = True,
) -> Corpus:
    """Read ``source`` (file, folder, glob or corpus name) as one normalised text."""
    resolved = resolve_source(source, encoding=encoding, data_dir=data_dir, progress=progress)
    if resolved.text is not None:
        return _finish(_normalise(resolved.text), source, (), lowercase)
    parts = []
    used = []
    for path in resolved.paths:
        data = _read(path)
        if len(resolved.paths) == 1 and _looks_binary(data):
            raise CorpusError(f"{path}: looks like a binary file (it holds NUL bytes), not text")
        try:
            parts.append(_normalise(decode_bytes(data, str(path), resolved.encoding, errors)))
        except DecodeError:
            if resolved.skip_undecodable:
                continue
            raise
        used.append(str(path))
    text = parts[0] if len(parts) == 1 else _join(parts)  # one file is taken as it is
    return _finish(text, source, tuple(used), lowercase)


def _finish(text: str, name: str, files: tuple[str, ...], lowercase: bool) -> Corpus:
    if lowercase:
        text = text.lower()
    if not text:
        raise CorpusError(f"{name}: the text is empty")
    if not text.strip():
        raise CorpusError(f"{name}: the text is whitespace only")
    return Corpus(text, name, files)
