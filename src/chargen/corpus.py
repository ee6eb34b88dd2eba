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

The reading itself (decoding, the binary check, normalisation) is ``text_reader.TextReader``,
which ``chargen prepare`` streams from too; ``load_corpus`` joins its chunks. The named corpora
and their locations are in ``corpus_named``, their checked downloads in ``corpus_download``;
their names (and the decoding rules') stay importable from here.
"""

from __future__ import annotations

import codecs
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from chargen.atomic import available_memory, check_regular, open_regular
from chargen.corpus_download import DOWNLOAD_BLOCK, DOWNLOAD_TIMEOUT_S, fetch_named
from chargen.corpus_named import (
    NAMED_CORPORA,
    NamedCorpus,
    _local_copy,
    cache_dir,
    list_corpora,
    resolve_data_dir,
)
from chargen.errors import ConfigError, CorpusError
from chargen.text_reader import (
    BINARY_PROBE,
    ERROR_HANDLERS,
    TextReader,
    check_decoding,
    decode_bytes,
    looks_binary,
)

__all__ = [
    "BINARY_PROBE",
    "DOWNLOAD_BLOCK",
    "DOWNLOAD_TIMEOUT_S",
    "ERROR_HANDLERS",
    "MEMORY_PER_BYTE",
    "NAMED_CORPORA",
    "Corpus",
    "NamedCorpus",
    "ResolvedSource",
    "_local_copy",
    "cache_dir",
    "check_decoding",
    "check_fits_in_memory",
    "decode_bytes",
    "fetch_named",
    "list_corpora",
    "load_corpus",
    "resolve_data_dir",
    "resolve_source",
]

# memory per byte of source while reading and encoding it whole: the bytes, the decoded text
# (1-4 bytes a character), int64 ids while encoding (8 a token) and the final ids
MEMORY_PER_BYTE = 10


@dataclass(frozen=True)
class Corpus:
    """Decoded, normalised text with its name and the files it was read from."""

    text: str
    name: str
    files: tuple[str, ...]


# --- reading files ------------------------------------------------------------------------


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
    return [p for p in paths if not looks_binary(_head(p), encoding)]


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
    check_fits_in_memory(source, resolved.paths)
    reader = TextReader(resolved, errors, lowercase, max_word=None)
    text = "".join(reader.chunks())  # at the peak the chunks and the join: twice the text
    return _finish(text, source, tuple(reader.files))


def _finish(text: str, name: str, files: tuple[str, ...]) -> Corpus:
    """Refuse an empty or whitespace-only text (``isspace`` makes no copy, unlike ``strip``)."""
    if not text:
        raise CorpusError(f"{name}: the text is empty")
    if text.isspace():
        raise CorpusError(f"{name}: the text is whitespace only")
    return Corpus(text, name, files)
