"""Downloadable named corpora: the data dir's copy, the cache's, or one download into the
cache, each checked against the published SHA-256; a download goes to a temporary file beside
the cache copy and is renamed into place only once its checksum matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from chargen.corpus_named import NamedCorpus, cache_dir, resolve_data_dir
from chargen.errors import CorpusError

DOWNLOAD_TIMEOUT_S = 30
DOWNLOAD_BLOCK = 1 << 16


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
