"""Corpora larger than memory: tokenise a source once, in a streaming pass, into a data folder.

``DATA_DIR/tokens.bin`` holds the token ids (uint8 / uint16 / int32 by vocabulary size) read
back through ``np.memmap``; ``tokenizer.json`` the vocabulary; ``meta.json`` (written last, so
its presence marks a complete folder) the counts, the split point and the SHA-256 of the source
bytes. Memory stays bounded by the chunk size whatever the corpus size: pass 1 collects the
vocabulary (for ``bpe``: trains it from the stream of chunks), pass 2 encodes and appends.
The result equals encoding the whole text with ``build_tokenizer`` of the same kind.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from chargen.atomic import atomic_write_json
from chargen.corpus import BINARY_PROBE, ResolvedSource, resolve_source
from chargen.data import smallest_id_dtype
from chargen.errors import CheckpointError, ConfigError, CorpusError, DecodeError, TokenizerError
from chargen.tokenizer import (
    KINDS,
    WORD_PATTERN,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
)

FORMAT = "chargen-data"
VERSION = 1
META = "meta.json"
TOKENS = "tokens.bin"
TOKENIZER = "tokenizer.json"
CHUNK_BYTES = 1 << 20  # per-chunk temporaries stay near 40 MB


@dataclass(frozen=True)
class PreparedData:
    """A data folder opened for reading: memory-mapped ids, tokenizer and metadata."""

    path: Path
    ids: np.ndarray
    tokenizer: Tokenizer
    meta: dict[str, Any]


def is_prepared(source: str | os.PathLike[str]) -> bool:
    """True when ``source`` is a folder written by ``prepare`` (it holds meta.json)."""
    path = Path(source)
    return path.is_dir() and (path / META).is_file() and (path / TOKENS).is_file()


def open_prepared(source: str | os.PathLike[str]) -> PreparedData:
    """Open a data folder; CorpusError naming the file when it is incomplete or damaged."""
    path = Path(source)
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{path / META}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CorpusError(f"{path / META}: not a chargen data folder of version {VERSION}")
    tokenizer = load_tokenizer(path / TOKENIZER)
    dtype = np.dtype(meta["dtype"])
    size = (path / TOKENS).stat().st_size
    if size != meta["tokens"] * dtype.itemsize:
        raise CorpusError(
            f"{path / TOKENS}: {size} bytes, meta.json promises {meta['tokens']} tokens (truncated?)"
        )
    ids = np.memmap(path / TOKENS, dtype=dtype, mode="r")
    return PreparedData(path, ids, tokenizer, meta)


class _Reader:
    """Streams a resolved source as normalised text chunks, hashing the bytes it reads."""

    def __init__(self, resolved: ResolvedSource, errors: str, lowercase: bool, bar: tqdm) -> None:
        self.resolved = resolved
        self.errors = errors
        self.lowercase = lowercase
        self.bar = bar
        self.sha = hashlib.sha256()
        self.files_used = 0

    def chunks(self) -> Iterator[str]:
        if self.resolved.text is not None:
            data = self.resolved.text
            self.sha.update(data.encode("utf-8", "surrogatepass"))
            self.bar.update(len(data))
            yield from self._normalise(
                iter([data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)])
            )
            return
        many = len(self.resolved.paths) > 1
        for path in self.resolved.paths:
            if self.resolved.skip_undecodable:  # small files: decode whole, leave out on failure
                try:
                    pieces: Iterator[str] = iter(list(self._file_chunks(path, many)))
                except DecodeError:
                    continue
            else:
                pieces = self._file_chunks(path, many)
            ended_with_newline = True
            for chunk in self._normalise(pieces):
                ended_with_newline = chunk.endswith("\n")
                yield chunk
            self.files_used += 1
            if many and not ended_with_newline:
                yield "\n"

    def _file_chunks(self, path: Path, many: bool) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(self.resolved.encoding)(self.errors)
        offset = 0
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
        with handle:
            first = True
            while True:
                block = handle.read(CHUNK_BYTES)
                if first and not many and b"\x00" in block[:BINARY_PROBE]:
                    raise CorpusError(
                        f"{path}: looks like a binary file (it holds NUL bytes), not text"
                    )
                first = False
                self.sha.update(block)
                self.bar.update(len(block))
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    buffered = len(exc.object) - len(block)
                    at = offset - buffered + exc.start
                    raise DecodeError(
                        f"{path}: byte 0x{exc.object[exc.start]:02x} at offset {at} is not valid "
                        f"{self.resolved.encoding}; pass --encoding latin-1 (or the file's encoding) or --errors replace"
                    ) from None
                offset += len(block)
                if text:
                    yield text
                if not block:
                    return

    def _normalise(self, chunks: Iterator[str]) -> Iterator[str]:
        """BOM dropped at the start, CRLF / CR -> LF across chunk edges, optional lower-casing."""
        held = ""
        first = True
        for chunk in chunks:
            chunk = held + chunk
            if first:
                chunk = chunk.removeprefix("\ufeff")
                first = False
            held = "\r" if chunk.endswith("\r") else ""
            if held:
                chunk = chunk[:-1]
            chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
            if self.lowercase:
                chunk = chunk.lower()
            if chunk:
                yield chunk
        if held:
            yield "\n"


def _word_pieces(chunks: Iterator[str]) -> Iterator[str]:
    """Re-cut chunks at the start of their last whitespace run so no word token is split."""
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = len(text)
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        while cut > 0 and not text[cut - 1].isspace():
            cut -= 1
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        if cut == 0:
            carry = text
            continue
        yield text[:cut]
        carry = text[cut:]
    if carry:
        yield carry


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
) -> dict[str, Any]:
    """Tokenise ``source`` into data folder ``out`` in two streaming passes; return its metadata."""
    if tokenizer not in KINDS:
        raise ConfigError(f"--tokenizer must be {', '.join(KINDS)}, got {tokenizer!r}")
    folder = Path(out)
    if (folder / META).exists() and not overwrite:
        raise CheckpointError(
            f"{folder} already holds prepared data; pass --overwrite to replace it"
        )
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} exists and is not a folder")
    resolved = resolve_source(source, encoding=encoding, data_dir=data_dir, progress=progress)
    _check_encoding(resolved.encoding)
    total = (
        len(resolved.text)
        if resolved.text is not None
        else sum(p.stat().st_size for p in resolved.paths)
    )

    def bar(desc: str) -> tqdm:
        return tqdm(
            total=total, unit="B", unit_scale=True, desc=desc, disable=not progress, file=sys.stderr
        )

    # pass 1: the vocabulary
    with bar("vocabulary") as b1:
        reader = _Reader(resolved, errors, lowercase, b1)
        chars = 0
        if tokenizer == "char":
            symbols: set[str] = set()
            char_counts: Counter[str] = Counter()  # only needed to rank symbols for --max-vocab
            for chunk in reader.chunks():
                if max_vocab is None:
                    symbols.update(chunk)
                else:
                    char_counts.update(chunk)
                chars += len(chunk)
            if not symbols and not char_counts:
                raise CorpusError(f"{source}: the text is empty")
            tok: Tokenizer = (
                CharTokenizer(sorted(symbols))
                if max_vocab is None
                else CharTokenizer.from_counts(char_counts, max_vocab)
            )
        elif tokenizer == "bpe":
            seen = [0]  # characters streamed into training

            def counted(pieces: Iterator[str]) -> Iterator[str]:
                for piece in pieces:
                    seen[0] += len(piece)
                    yield piece

            try:
                tok = BPETokenizer.train(counted(_word_pieces(reader.chunks())), max_vocab)
            except TokenizerError:
                if not seen[0]:
                    raise CorpusError(f"{source}: the text is empty") from None
                raise
            chars = seen[0]
        else:
            counts: Counter[str] = Counter()
            for piece in _word_pieces(reader.chunks()):
                counts.update(WORD_PATTERN.findall(piece))
                chars += len(piece)
            if not counts:
                raise CorpusError(f"{source}: the text is empty")
            tok = WordTokenizer.from_counts(counts, max_vocab)
    if all(s.isspace() for i, s in enumerate(tok.vocab) if i != tok.unk_id):
        raise CorpusError(f"{source}: the text is whitespace only")
    source_sha = reader.sha.hexdigest()
    dtype = smallest_id_dtype(tok.vocab_size)

    # pass 2: encode and append
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / META).unlink(missing_ok=True)
        partial = folder / f".{TOKENS}.partial"
        count = 0
        with bar("encoding") as b2, partial.open("wb") as sink:
            reader = _Reader(resolved, errors, lowercase, b2)
            pieces = reader.chunks() if tokenizer == "char" else _word_pieces(reader.chunks())
            for piece in pieces:
                ids = tok.encode(piece, unknown="error").astype(dtype)
                sink.write(ids.tobytes())
                count += len(ids)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, folder / TOKENS)
    except OSError as exc:
        raise CheckpointError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    tok.save(folder / TOKENIZER)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "files": reader.files_used,
        "encoding": resolved.encoding,
        "errors": errors,
        "lowercase": lowercase,
        "tokenizer": tokenizer,
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "tokens": count,
        "chars": chars,
        "split": int(count * 0.9),
        "source_sha256": source_sha,
    }
    atomic_write_json(folder / META, meta)
    return meta


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not an encoding Python knows") from None
