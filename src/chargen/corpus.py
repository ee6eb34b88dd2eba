"""Sources to decoded, normalised text.

A source is a file, a folder (its regular non-hidden files below it, sorted by relative path,
files that look binary skipped), a glob (its matching files, sorted, binary ones skipped), or a
named corpus (``list_corpora``). Decoding is explicit: strict UTF-8 unless told otherwise, and
undecodable bytes are a one-line ``DecodeError`` naming the file, the byte offset and the fix.
A UTF-8 BOM at the start of a file is dropped; CRLF and lone CR become LF; ``lowercase``
lower-cases. Several files are joined so that each ends with a newline; one file is kept as is.

Only regular files are read: a FIFO, device or socket named as a source is a one-line error
before any read (folders and globs skip them), and ``load_corpus`` refuses a text that would not
fit in the memory available (``MEMORY_PER_BYTE`` bytes per byte of source), pointing at
``chargen prepare``, which streams.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import glob
import hashlib
import http.client
import os
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from chargen.atomic import available_memory, check_regular, open_regular
from chargen.errors import ConfigError, CorpusError, DecodeError

BINARY_PROBE = 8192  # a file whose first 8 KiB hold a NUL byte is taken for binary
ERROR_HANDLERS = ("strict", "replace", "ignore")
DOWNLOAD_TIMEOUT_S = 30
DOWNLOAD_BLOCK = 1 << 16
# memory per byte of source while reading and encoding it whole: the bytes, the decoded text
# (1-4 bytes a character), int64 ids while encoding (8 a token) and the final ids
MEMORY_PER_BYTE = 10


@dataclass(frozen=True)
class Corpus:
    """Decoded, normalised text with its name and the files it was read from."""

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

    @property
    def offline(self) -> bool:
        """True when the corpus is built from the running Python, never downloaded."""
        return self.build is not None or self.list_files is not None


def _python_docs() -> tuple[str, tuple[str, ...]]:
    """pydoc_data's topic texts joined in sorted key order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics)), ()


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    """The standard library's .py files (tests included, site-packages excluded), sorted."""
    root = _stdlib_root()
    excluded = {"site-packages", "dist-packages", "__pycache__"}
    files = (
        p
        for p in root.rglob("*.py")
        if excluded.isdisjoint(p.relative_to(root).parts) and p.is_file()
    )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


_PY = f"{sys.version_info.major}.{sys.version_info.minor}"

NAMED_CORPORA: dict[str, NamedCorpus] = {
    "python-docs": NamedCorpus(
        "python-docs",
        f"Python {_PY} documentation topics (pydoc_data), ~465K chars, English prose and code, offline",
        build=_python_docs,
    ),
    "python-stdlib": NamedCorpus(
        "python-stdlib",
        f"the running Python {_PY}'s standard-library .py files (test folders included, "
        "site-packages excluded, files that are not UTF-8 skipped), tens of MB, offline",
        list_files=_stdlib_files,
    ),
    "nietzsche": NamedCorpus(
        "nietzsche",
        "Nietzsche, Beyond Good and Evil (English translation): the corpus of Deep Learning "
        "with Python 8.1, 600,902 bytes, latin-1",
        encoding="latin-1",
        url="https://s3.amazonaws.com/text-datasets/nietzsche.txt",
        sha256="769ce58bf021ed0fa86232eac03867ccd275181a94caafeef56b70b16ec741ff",
        filename="nietzsche.txt",
    ),
    "tinyshakespeare": NamedCorpus(
        "tinyshakespeare",
        "Tiny Shakespeare from char-rnn (nanoGPT's shakespeare_char), 1,115,394 bytes, utf-8",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
    ),
}


# --- where named corpora live -------------------------------------------------------------


def resolve_data_dir(data_dir: str | None) -> Path | None:
    """``--data-dir``, else the ``CHARGEN_DATA`` environment variable, else None."""
    chosen = data_dir or os.environ.get("CHARGEN_DATA")
    return Path(chosen).expanduser() if chosen else None


def cache_dir() -> Path:
    """``CHARGEN_CACHE``, else ``~/.cache/chargen``."""
    chosen = os.environ.get("CHARGEN_CACHE")
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "chargen"


def list_corpora(data_dir: str | None = None) -> list[dict[str, str]]:
    """Each named corpus: ``name``, ``description`` and ``origin`` (where it is or comes from)."""
    return [
        {"name": c.name, "description": c.description, "origin": _origin(c, data_dir)}
        for c in NAMED_CORPORA.values()
    ]


def _origin(corpus: NamedCorpus, data_dir: str | None) -> str:
    """The local copy's path, the URL it would be downloaded from, or how it is built."""
    if corpus.build is not None:
        return f"built offline from pydoc_data.topics of Python {_PY}"
    if corpus.list_files is not None:
        return f"read offline from {_stdlib_root()}"
    local = _local_copy(corpus, data_dir)
    if local is not None:
        return str(local)
    return f"{corpus.url} (downloaded once into {cache_dir()})"


def _local_copy(corpus: NamedCorpus, data_dir: str | None) -> Path | None:
    """The data dir's copy, else the cache's, else None (checksums are not checked here)."""
    assert corpus.filename is not None
    folder = resolve_data_dir(data_dir)
    if folder is not None and (folder / corpus.filename).is_file():
        return folder / corpus.filename
    cached = cache_dir() / corpus.filename
    return cached if cached.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def fetch_named(corpus: NamedCorpus, data_dir: str | None, progress: bool = True) -> Path:
    """Path of a downloadable corpus: the data dir's copy, the cache's, or downloaded once.

    Every copy is checked against the published SHA-256; a bad copy in the data dir is an error,
    a bad copy in the cache is downloaded again.
    """
    assert corpus.filename and corpus.url and corpus.sha256
    folder = resolve_data_dir(data_dir)
    if folder is not None and (folder / corpus.filename).is_file():
        path = folder / corpus.filename
        if _sha256(path) != corpus.sha256:
            raise CorpusError(
                f"{path}: checksum does not match the published {corpus.name} corpus "
                f"(sha256 {corpus.sha256[:12]}...); put the original file there or remove it"
            )
        return path
    cached = cache_dir() / corpus.filename
    if cached.is_file() and _sha256(cached) == corpus.sha256:
        return cached
    return _download(corpus, cached, folder, progress)


def _download(corpus: NamedCorpus, target: Path, searched: Path | None, progress: bool) -> Path:
    """Download into a temporary file beside ``target``, verify the checksum, rename into place."""
    assert corpus.url and corpus.sha256
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise CorpusError(
            f"cannot write the cache folder {target.parent} ({exc.strerror or exc}); set "
            f"CHARGEN_CACHE to a writable folder, or pass --data-dir DIR holding {corpus.filename}"
        ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _copy_url(corpus, out, progress)
        if digest != corpus.sha256:
            raise CorpusError(
                f"downloaded {corpus.name} from {corpus.url}, but its checksum does not match "
                "the published one; not kept"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        _unlink(tmp)
        where = f"no {corpus.filename} in {searched}; " if searched is not None else ""
        raise CorpusError(
            f"cannot download {corpus.name} ({getattr(exc, 'reason', None) or exc}); {where}"
            f"pass --data-dir DIR holding {corpus.filename} or set CHARGEN_DATA"
        ) from None
    except BaseException:
        _unlink(tmp)
        raise
    return target


def _copy_url(corpus: NamedCorpus, out: BinaryIO, progress: bool) -> str:
    """Stream ``corpus.url`` into the binary file ``out`` with a byte progress bar; return sha256."""
    assert corpus.url is not None
    digest = hashlib.sha256()
    with urllib.request.urlopen(corpus.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"downloading {corpus.name}",
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            for block in iter(lambda: response.read(DOWNLOAD_BLOCK), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# --- decoding -----------------------------------------------------------------------------


def check_decoding(encoding: str | None, errors: str = "strict") -> None:
    """ConfigError (one line) for an encoding Python does not know or an unsupported ``errors``."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(
                f"--encoding {encoding!r} is not an encoding Python knows "
                "(try utf-8, latin-1, cp1252, utf-16)"
            ) from None
    if errors not in ERROR_HANDLERS:
        raise ConfigError(f"--errors must be strict, replace or ignore, got {errors!r}")


def decode_bytes(data: bytes, path: str, encoding: str, errors: str) -> str:
    """Decode with a one-line DecodeError naming the file, the byte offset and the fix."""
    check_decoding(encoding, errors)
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"{path}: byte 0x{data[exc.start]:02x} at offset {exc.start} is not valid {encoding}; "
            "pass --encoding latin-1 (or the file's encoding) or --errors replace"
        ) from None


@functools.lru_cache(maxsize=32)
def _nul_means_binary(encoding: str) -> bool:
    """False for encodings whose text holds NUL bytes anyway (UTF-16, UTF-32)."""
    try:
        return b"\x00" not in "a\n".encode(encoding)
    except (LookupError, UnicodeError):
        return True


def _looks_binary(data: bytes, encoding: str = "utf-8") -> bool:
    """A NUL byte in the first ``BINARY_PROBE`` bytes, for encodings where NUL is not text."""
    return _nul_means_binary(encoding) and b"\x00" in data[:BINARY_PROBE]


def _normalise(text: str) -> str:
    """Drop a leading BOM; CRLF and lone CR become LF (no copy when there is nothing to do)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


# --- reading files ------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    """The bytes of a regular file, or a one-line CorpusError naming it."""
    check_regular(path, CorpusError)
    try:
        return path.read_bytes()
    except PermissionError:
        raise CorpusError(f"{path}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _head(path: Path) -> bytes:
    """The first ``BINARY_PROBE`` bytes of a regular file (CorpusError when it cannot be read)."""
    try:
        with open_regular(path, CorpusError) as handle:
            return handle.read(BINARY_PROBE)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_fits_in_memory(name: str, paths: tuple[Path, ...]) -> None:
    """CorpusError naming ``chargen prepare`` when reading ``paths`` whole would need more
    memory than is available (about ``MEMORY_PER_BYTE`` bytes per byte of source)."""
    size = sum(check_regular(p, CorpusError).st_size for p in paths)
    room = available_memory()
    if room is None or size * MEMORY_PER_BYTE <= room:
        return
    raise CorpusError(
        f"{name}: {_size(size)} of text needs about {_size(size * MEMORY_PER_BYTE)} of memory "
        f"to read whole, and {_size(room)} is available; tokenise it once with "
        f"`chargen prepare {name} --out DIR` and train on DIR (read memory-mapped)"
    )


def _size(n: int) -> str:
    """A byte count for people: 1.5 GB, 20 MB, 512 B."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _text_files(paths: list[Path], encoding: str) -> list[Path]:
    """``paths`` without those that look binary."""
    return [p for p in paths if not _looks_binary(_head(p), encoding)]


def _folder_files(folder: Path, encoding: str = "utf-8") -> list[Path]:
    """Regular non-hidden text files below ``folder``, recursively, sorted by relative path."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if not any(part.startswith(".") for part in rel.parts) and path.is_file():
            found.append((rel.as_posix(), path))
    files = _text_files([path for _, path in sorted(found)], encoding)
    if not files:
        raise CorpusError(f"{folder}: the folder holds no text files")
    return files


def _glob_files(pattern: str, encoding: str) -> list[Path]:
    """Files matching ``pattern`` (``**`` recurses), sorted, binary ones skipped."""
    matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not matches:
        raise CorpusError(f"{pattern}: the pattern matches no file")
    files = _text_files([Path(p) for p in matches], encoding)
    if not files:
        raise CorpusError(f"{pattern}: the pattern matches only binary files")
    return files


def _is_glob(source: str) -> bool:
    return any(ch in source for ch in "*?[") and not Path(source).exists()


# --- sources ------------------------------------------------------------------------------


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
    """Resolve a file, folder, glob or corpus name to what must be read, without reading it.

    An existing path wins over a corpus name; a downloadable corpus is fetched here.
    """
    check_decoding(encoding)
    if source in NAMED_CORPORA and not Path(source).exists():
        return _resolve_named(NAMED_CORPORA[source], encoding, data_dir, progress)
    chosen = encoding or "utf-8"
    if _is_glob(source):
        return ResolvedSource(source, tuple(_glob_files(source, chosen)), chosen)
    path = Path(source)
    if not path.exists():
        known = ", ".join(NAMED_CORPORA)
        raise CorpusError(
            f"{source}: no such file or folder, and not a corpus name (known corpora: {known})"
        )
    if path.is_dir():
        return ResolvedSource(source, tuple(_folder_files(path, chosen)), chosen)
    check_regular(path, CorpusError)
    return ResolvedSource(source, (path,), chosen)


def _resolve_named(
    named: NamedCorpus, encoding: str | None, data_dir: str | None, progress: bool
) -> ResolvedSource:
    if named.offline:
        if encoding is not None and codecs.lookup(encoding).name != "utf-8":
            raise ConfigError(
                f"{named.name} is built from Python's own text; --encoding does not apply"
            )
        if named.build is not None:
            text, _ = named.build()
            return ResolvedSource(named.name, (), "utf-8", text=text)
        assert named.list_files is not None
        return ResolvedSource(named.name, tuple(named.list_files()), "utf-8", skip_undecodable=True)
    path = fetch_named(named, data_dir, progress)
    return ResolvedSource(named.name, (path,), encoding or named.encoding)


def load_corpus(
    source: str,
    *,
    encoding: str | None = None,
    errors: str = "strict",
    lowercase: bool = False,
    data_dir: str | None = None,
    progress: bool = True,
) -> Corpus:
    """Read ``source`` (file, folder, glob or corpus name) as one normalised text.

    ``encoding`` None means the named corpus's own encoding, else UTF-8. ``errors`` is
    ``strict`` | ``replace`` | ``ignore`` as in ``bytes.decode``. Raises CorpusError (DecodeError
    for undecodable bytes) or ConfigError, each with a one-line message.
    """
    check_decoding(encoding, errors)
    resolved = resolve_source(source, encoding=encoding, data_dir=data_dir, progress=progress)
    if resolved.text is not None:
        text = _normalise(resolved.text)
        return _finish(text.lower() if lowercase else text, source, ())
    check_fits_in_memory(source, resolved.paths)
    parts, used = _read_parts(resolved, errors, lowercase)
    text = parts[0] if len(resolved.paths) == 1 and parts else "".join(parts)
    del parts  # the joined text is the only copy from here on
    return _finish(text, source, used)


def _read_parts(
    resolved: ResolvedSource, errors: str, lowercase: bool
) -> tuple[list[str], tuple[str, ...]]:
    """Each file decoded and normalised; with several files each part ends with a newline."""
    many = len(resolved.paths) > 1
    parts: list[str] = []
    used: list[str] = []
    for path in resolved.paths:
        try:
            text = _read_text(path, resolved.encoding, errors, binary_check=not many)
        except DecodeError:
            if resolved.skip_undecodable:
                continue
            raise
        if lowercase:
            text = text.lower()
        if many and text and not text.endswith("\n"):
            text += "\n"
        if text:
            parts.append(text)
        used.append(str(path))
    return parts, tuple(used)


def _read_text(path: Path, encoding: str, errors: str, *, binary_check: bool) -> str:
    """One file decoded and normalised; the raw bytes are released before normalising."""
    data = _read(path)
    if binary_check and _looks_binary(data, encoding):
        raise CorpusError(f"{path}: looks like a binary file (it holds NUL bytes), not text")
    text = decode_bytes(data, str(path), encoding, errors)
    del data
    return _normalise(text)


def _finish(text: str, name: str, files: tuple[str, ...]) -> Corpus:
    """Refuse an empty or whitespace-only text (``isspace`` makes no copy, unlike ``strip``)."""
    if not text:
        raise CorpusError(f"{name}: the text is empty")
    if text.isspace():
        raise CorpusError(f"{name}: the text is whitespace only")
    return Corpus(text, name, files)
