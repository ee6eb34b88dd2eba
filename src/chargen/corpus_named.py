"""The named corpora (``NAMED_CORPORA``, ``list_corpora``) and where they live: the data dir
(``--data-dir`` or ``CHARGEN_DATA``) and the download cache (``CHARGEN_CACHE``, else
``~/.cache/chargen``). Two are built offline from the running Python; the others are one file
each, downloaded once with a published checksum (``corpus_download``).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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
