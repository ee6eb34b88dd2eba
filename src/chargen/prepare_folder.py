"""A prepared data folder on disk: its file names, ``meta.json`` checks, and opening it for
reading (``open_prepared``: memory-mapped ids, tokenizer, metadata), plus ``is_prepared``, which
tells such a folder, or a half-written one, from a folder of text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chargen.atomic import check_regular, loads_bounded, read_regular
from chargen.data import smallest_id_dtype
from chargen.errors import CorpusError
from chargen.tokenizer import Tokenizer, load_tokenizer

FORMAT = "chargen-data"
VERSION = 1
META = "meta.json"
TOKENS = "tokens.bin"
TOKENIZER = "tokenizer.json"
MAX_META_BYTES = 16 << 20
ID_DTYPES = ("uint8", "uint16", "int32")


@dataclass(frozen=True)
class PreparedData:
    """A data folder opened for reading: memory-mapped ids, tokenizer and metadata."""

    path: Path
    ids: np.ndarray
    tokenizer: Tokenizer
    meta: dict[str, Any]


def is_prepared(source: str | os.PathLike[str]) -> bool:
    """True when ``source`` is a folder written by ``prepare`` (it holds meta.json).

    CorpusError when it holds a half-written preparation (``tokens.bin`` or a temporary of it,
    no ``meta.json``), so it is never read as a folder of text.
    """
    path = Path(source)
    if not path.is_dir():
        return False
    if os.path.lexists(path / META):
        return True
    if os.path.lexists(path / TOKENS) or _leftovers(path, (TOKENS,)):
        raise CorpusError(
            f"{path}: holds a half-written preparation (no {META}: `chargen prepare` was "
            f"stopped before it finished); run `chargen prepare SOURCE --out {path}` again"
        )
    return False


def _leftovers(folder: Path, names: tuple[str, ...] = (TOKENS, TOKENIZER, META)) -> list[Path]:
    """Temporaries of ``prepare`` in ``folder``: ``.NAME*.partial`` and ``.NAME.*.tmp``."""
    found: list[Path] = []
    for name in names:
        found += folder.glob(f".{name}*.partial")
        found += folder.glob(f".{name}.*.tmp")
    return found


def open_prepared(source: str | os.PathLike[str]) -> PreparedData:
    """Open a data folder; CorpusError naming the file when it is incomplete or damaged."""
    path = Path(source)
    raw = read_regular(path / META, CorpusError, MAX_META_BYTES)
    try:
        meta = loads_bounded(raw.decode("utf-8"))
    except ValueError as exc:
        raise CorpusError(f"{path / META}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CorpusError(f"{path / META}: not a chargen data folder of version {VERSION}")
    _check_meta(path / META, meta)
    tokenizer = load_tokenizer(path / TOKENIZER)
    dtype = np.dtype(meta["dtype"])
    if (
        tokenizer.vocab_size != meta["vocab_size"]
        or smallest_id_dtype(tokenizer.vocab_size) != dtype
    ):
        raise CorpusError(
            f"{path / TOKENIZER}: {tokenizer.vocab_size} symbols, but {META} was written for "
            f"{meta['vocab_size']} ({meta['dtype']} ids); the folder mixes two preparations"
        )
    size = check_regular(path / TOKENS, CorpusError).st_size
    if size != meta["tokens"] * dtype.itemsize:
        raise CorpusError(
            f"{path / TOKENS}: {size} bytes, meta.json promises {meta['tokens']} tokens (truncated?)"
        )
    ids = np.memmap(path / TOKENS, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
    return PreparedData(path, ids, tokenizer, meta)


def _check_meta(where: Path, meta: dict[str, Any]) -> None:
    """CorpusError naming the first field of ``meta.json`` that is missing or of a wrong type."""
    checks = {
        "tokens": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "vocab_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "dtype": lambda v: v in ID_DTYPES,
        "source_sha256": lambda v: isinstance(v, str),
    }
    for name, ok in checks.items():
        if not ok(meta.get(name)):
            raise CorpusError(f"{where}: field {name!r} is missing or invalid (damaged folder?)")
