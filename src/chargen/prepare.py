"""Corpora larger than memory: tokenise a source once, in a streaming pass, into a data folder.

``DATA_DIR/tokens.bin`` holds the token ids (uint8 / uint16 / int32 by vocabulary size) read
back through ``np.memmap``; ``tokenizer.json`` the vocabulary; ``meta.json`` (written last, so
its presence marks a complete folder) the counts, the split point and the SHA-256 of the source
bytes. Memory stays bounded by the chunk size whatever the corpus size: pass 1 collects the
vocabulary (the kind's ``from_chunks``; for ``bpe`` it trains from the stream of chunks), pass
2 encodes the stream cut by the kind's ``pieces`` and appends. The kind is looked up in
``tokenizer.TOKENIZERS``. The result equals encoding the whole text with ``build_tokenizer``
of the same kind.

``lines=True`` (``--lines``, one item per line) tokenises the text a ``--lines`` run does,
``lines.lines_text(lines.items_of(text))``, streamed by ``_line_items`` between the reader and
both passes; ``meta.json`` records ``"lines"`` (so a run refuses data prepared the other way)
and its ``"items"``. Memory is then bounded by the chunk size plus the longest line (an item:
training pads each batch to its longest item anyway).

Nothing is half-written: pass 2 writes fresh temporary names in the folder (created with
``O_EXCL | O_NOFOLLOW``, so never through a link), and only once the new data is complete does a short commit replace the old files
(``meta.json`` removed first, then the renames, then the new ``meta.json``; SIGINT / SIGTERM wait
for it). SIGINT or SIGTERM before that ends ``prepare`` with ``PrepareInterrupted`` (exit status
130 / 143), the temporaries removed and the old data, if any, untouched. A folder holding
``tokens.bin`` or a temporary of it but no ``meta.json`` (a preparation killed outright) is
refused by ``is_prepared`` with one line, never read as plain text.

``--novelty-index`` (character corpora only) then stores, in ``DATA_DIR/novelty/``, the suffix
array of the training split (the first 90% of the ids) that ``chargen novelty`` and
``score --copies`` look copied spans up in, memory-mapped (``novelty.CorpusIndex``), with
``built_from.json`` recording the data it was built from, so an index left from an earlier
preparation is never used for new data.

This module is the command: the two passes and their order. The folder format and
``open_prepared`` are in ``prepare_folder``, the streaming reader in ``prepare_reader`` (over
``text_reader``, the reader ``load_corpus`` uses too), the
staged write and commit in ``prepare_writer``, the novelty index in ``prepare_novelty``; their
names stay importable from here.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from chargen.corpus import resolve_source
from chargen.data import smallest_id_dtype
from chargen.errors import CheckpointError, ConfigError, CorpusError, TokenizerError
from chargen.prepare_folder import (
    FORMAT,
    ID_DTYPES,
    MAX_META_BYTES,
    META,
    TOKENIZER,
    TOKENS,
    VERSION,
    PreparedData,
    is_prepared,
    open_prepared,
)
from chargen.prepare_novelty import (
    NOVELTY_BUILT_FROM,
    NOVELTY_CHAR_ONLY,
    NOVELTY_DIR,
    NOVELTY_FORMAT,
    NOVELTY_NOT_LINES,
    NOVELTY_VAL_FRACTION,
    build_novelty_index,
    check_novelty_index,
    novelty_stamp,
    open_novelty_index,
)
from chargen.prepare_reader import _line_items, _Reader, _word_pieces
from chargen.prepare_writer import PrepareInterrupted, _Signals, write_folder
from chargen.tokenizer import KINDS, TOKENIZERS, Tokenizer

__all__ = [
    "check_novelty_index",
    "CHUNK_BYTES",
    "FORMAT",
    "ID_DTYPES",
    "MAX_META_BYTES",
    "META",
    "NOVELTY_BUILT_FROM",
    "NOVELTY_CHAR_ONLY",
    "NOVELTY_DIR",
    "NOVELTY_FORMAT",
    "NOVELTY_NOT_LINES",
    "NOVELTY_VAL_FRACTION",
    "TOKENIZER",
    "TOKENS",
    "VERSION",
    "PrepareInterrupted",
    "PreparedData",
    "_Reader",
    "_line_items",
    "_word_pieces",
    "build_novelty_index",
    "is_prepared",
    "novelty_stamp",
    "open_novelty_index",
    "open_prepared",
    "prepare",
]

CHUNK_BYTES = 1 << 20  # per-chunk temporaries stay near 40 MB


def prepare(
    source: str,
    out: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    errors: str = "strict",
    lowercase: bool = False,
    tokenizer: str = "char",
    max_vocab: int | None = None,
    data_dir: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    lines: bool = False,
) -> dict[str, Any]:
    """Tokenise ``source`` into data folder ``out`` in two streaming passes; return its metadata.

    SIGINT / SIGTERM raise PrepareInterrupted (see the module notes); with ``overwrite`` the old
    data is replaced only once the new data is complete. ``lines``: one item per non-empty line,
    tokenised as a ``--lines`` run tokenises the list; meta.json records it.
    """
    if tokenizer not in KINDS:
        raise ConfigError(f"--tokenizer must be {', '.join(KINDS)}, got {tokenizer!r}")
    folder = Path(out)
    if os.path.lexists(folder / META) and not overwrite:
        raise CheckpointError(
            f"{folder} already holds prepared data; pass --overwrite to replace it"
        )
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} exists and is not a folder")
    signals = _Signals(folder)
    with signals.installed():
        resolved = resolve_source(source, encoding=encoding, data_dir=data_dir, progress=progress)
        _check_encoding(resolved.encoding)
        total = (
            len(resolved.text)
            if resolved.text is not None
            else sum(p.stat().st_size for p in resolved.paths)
        )

        def bar(desc: str) -> tqdm:
            return tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=desc,
                disable=not progress,
                file=sys.stderr,
            )

        with bar("vocabulary") as b1:
            reader = _Reader(resolved, errors, lowercase, lines, b1, CHUNK_BYTES)
            tok, chars = _vocabulary(reader, source, tokenizer, max_vocab)
        if all(s.isspace() for i, s in enumerate(tok.vocab) if i != tok.unk_id):
            raise CorpusError(f"{source}: the text is whitespace only")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "source": source,
            "files": 0,
            "encoding": resolved.encoding,
            "errors": errors,
            "lowercase": lowercase,
            "lines": lines,
            "tokenizer": tokenizer,
            "vocab_size": tok.vocab_size,
            "dtype": smallest_id_dtype(tok.vocab_size).name,
            "tokens": 0,
            "chars": chars,
            "split": 0,
            "source_sha256": reader.sha.hexdigest(),
        }
        with bar("encoding") as b2:
            reader = _Reader(resolved, errors, lowercase, lines, b2, CHUNK_BYTES)
            _write_folder(folder, reader, tok, meta, signals)
    return meta


def _vocabulary(
    reader: _Reader, source: str, tokenizer: str, max_vocab: int | None
) -> tuple[Tokenizer, int]:
    """Pass 1: the vocabulary of ``tokenizer``'s kind (its ``from_chunks``) and the characters
    streamed."""
    seen = [0]  # characters streamed into the vocabulary

    def counted(chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            seen[0] += len(chunk)
            yield chunk

    try:
        return TOKENIZERS[tokenizer].from_chunks(counted(reader.chunks()), max_vocab), seen[0]
    except TokenizerError:
        if not seen[0]:
            empty = "holds no non-empty line" if reader.lines else "the text is empty"
            raise CorpusError(f"{source}: {empty}") from None
        raise


def _write_folder(
    folder: Path, reader: _Reader, tok: Tokenizer, meta: dict[str, Any], signals: _Signals
) -> None:
    """Pass 2 into a fresh temporary in ``folder``, ``meta`` completed, then the commit
    (``prepare_writer.write_folder``: on any failure or signal nothing is left behind)."""

    def fill(sink: BinaryIO) -> None:
        meta["tokens"] = _encode_into(sink, reader, tok, np.dtype(meta["dtype"]), meta)
        meta["files"] = reader.files_used
        if reader.lines:
            meta["items"] = reader.items
        meta["split"] = int(meta["tokens"] * 0.9)

    write_folder(folder, fill, tok, meta, signals)


def _encode_into(
    sink: Any, reader: _Reader, tok: Tokenizer, dtype: np.dtype, meta: dict[str, Any]
) -> int:
    """Pass 2: encode the stream into ``sink``; CorpusError when the source changed since
    pass 1 (new symbols, or other bytes). Returns the token count."""
    source = meta["source"]
    count = 0
    for piece in tok.pieces(reader.chunks()):
        try:
            ids = tok.encode(piece, unknown="error").astype(dtype)
        except TokenizerError:
            raise CorpusError(
                f"{source}: changed while prepare read it (its second pass met symbols the "
                "first did not); prepare a copy that does not change"
            ) from None
        sink.write(ids.tobytes())
        count += len(ids)
    if reader.sha.hexdigest() != meta["source_sha256"]:
        raise CorpusError(
            f"{source}: changed while prepare read it (its bytes differ between the two "
            "passes); prepare a copy that does not change"
        )
    return count


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not an encoding Python knows") from None
