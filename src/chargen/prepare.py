"""Corpora larger than memory: tokenise a source once, in a streaming pass, into a data folder.

``DATA_DIR/tokens.bin`` holds the token ids (uint8 / uint16 / int32 by vocabulary size) read
back through ``np.memmap``; ``tokenizer.json`` the vocabulary; ``meta.json`` (written last, so
its presence marks a complete folder) the counts, the split point and the SHA-256 of the source
bytes. Memory stays bounded by the chunk size whatever the corpus size: pass 1 collects the
vocabulary (for ``bpe``: trains it from the stream of chunks), pass 2 encodes and appends.
The result equals encoding the whole text with ``build_tokenizer`` of the same kind.

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
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from chargen.atomic import (
    atomic_write_json,
    check_regular,
    loads_bounded,
    open_regular,
    read_regular,
)
from chargen.corpus import BINARY_PROBE, ResolvedSource, resolve_source
from chargen.data import smallest_id_dtype, split_ids
from chargen.errors import (
    ChargenError,
    CheckpointError,
    ConfigError,
    CorpusError,
    DecodeError,
    TokenizerError,
)
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
MAX_META_BYTES = 16 << 20
ID_DTYPES = ("uint8", "uint16", "int32")
NOVELTY_DIR = "novelty"  # DATA_DIR/novelty/: the saved novelty index (--novelty-index)
NOVELTY_BUILT_FROM = "built_from.json"  # in it: the data the index was built from
NOVELTY_FORMAT = "chargen-novelty-source"
NOVELTY_VAL_FRACTION = 0.1  # the index covers the training split of runs with the default split
NOVELTY_CHAR_ONLY = (
    "--novelty-index needs --tokenizer char (for word or bpe data, `chargen novelty` builds "
    "the index from the decoded text when asked)"
)
NOVELTY_NOT_LINES = (
    "--novelty-index indexes prose; for a --lines list `chargen novelty` indexes the training "
    "items when asked"
)


@dataclass(frozen=True)
class PreparedData:
    """A data folder opened for reading: memory-mapped ids, tokenizer and metadata."""

    path: Path
    ids: np.ndarray
    tokenizer: Tokenizer
    meta: dict[str, Any]


class PrepareInterrupted(ChargenError):
    """SIGINT or SIGTERM stopped ``prepare``: its temporaries are gone, old data untouched."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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


class _Signals:
    """While installed, the first SIGINT / SIGTERM raises PrepareInterrupted; ``held`` defers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.had_data = os.path.lexists(folder / META)
        self.armed = True

    def handler(self, signum: int, frame: Any) -> None:
        if not self.armed:
            return  # during the commit, or after the first signal: finish what is under way
        self.armed = False
        name, code = ("SIGINT", 130) if signum == signal.SIGINT else ("SIGTERM", 143)
        kept = f"{self.folder} keeps its previous data" if self.had_data else "nothing was written"
        raise PrepareInterrupted(f"{name}: prepare stopped; {kept}", code)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        """Route SIGINT and SIGTERM here (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self.handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A stretch no signal interrupts (the commit); a signal during it is ignored."""
        self.armed = False
        yield


class _Reader:
    """Streams a resolved source as normalised text chunks, hashing the bytes it reads."""

    def __init__(
        self, resolved: ResolvedSource, errors: str, lowercase: bool, lines: bool, bar: tqdm
    ) -> None:
        self.resolved = resolved
        self.errors = errors
        self.lowercase = lowercase
        self.lines = lines
        self.bar = bar
        self.sha = hashlib.sha256()
        self.files_used = 0
        self.items = 0  # with ``lines``: the items streamed

    def chunks(self) -> Iterator[str]:
        """The normalised text in chunks; with ``lines`` its ``--lines`` text, items counted."""
        if not self.lines:
            yield from self._text_chunks()
            return
        boundaries = 0
        for piece in _line_items(self._text_chunks()):
            boundaries += piece.count("\n")
            yield piece
        self.items = max(0, boundaries - 1)

    def _text_chunks(self) -> Iterator[str]:
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
        with open_regular(path, CorpusError) as handle:
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
        """BOM dropped at the start, CRLF / CR -> LF across chunk edges, optional lower-casing.

        Lower-casing waits for the end of each word: a capital sigma's lower case depends on
        the letters around it (final ς or σ), and a word may straddle two chunks; whitespace
        ends that context, so text cut at whitespace lower-cases as the whole text does. (A
        "word" longer than ``MAX_WORD`` characters is lower-cased in pieces.)
        """
        held = ""  # a CR whose LF may open the next chunk
        word = ""  # the chunk's last word, waiting for its end to be lower-cased
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
                chunk = word + chunk
                cut = _after_last_space(chunk)
                if cut == 0 and len(chunk) < MAX_WORD:
                    word = chunk
                    continue
                cut = cut or len(chunk)
                chunk, word = chunk[:cut].lower(), chunk[cut:]
            if chunk:
                yield chunk
        tail = word.lower() + ("\n" if held else "")
        if tail:
            yield tail


MAX_WORD = 1 << 16  # characters a word waiting to be lower-cased may hold


def _after_last_space(text: str) -> int:
    """The index just after the last whitespace character of ``text`` (0 when it has none)."""
    i = len(text)
    while i > 0 and not text[i - 1].isspace():
        i -= 1
    return i


def _line_items(chunks: Iterator[str]) -> Iterator[str]:
    """``lines_text(items_of(text))`` of the text that ``chunks`` make up, streamed.

    Each line stripped with ``str.strip`` (all Unicode white space, as ``items_of``), blank
    lines dropped, a newline before the first item and after each. A line may cross chunk
    edges: the unfinished last line of a chunk is carried (as pieces, so a line of many chunks
    costs linear time) until a newline or the end of the stream finishes it.
    """
    started = False  # the newline before the first item is out
    carry: list[str] = []  # pieces of the line not finished yet
    for chunk in chunks:
        if "\n" not in chunk:
            carry.append(chunk)
            continue
        lines = chunk.split("\n")
        lines[0] = "".join(carry) + lines[0]
        carry = [lines.pop()]
        items = [stripped for line in lines if (stripped := line.strip())]
        if items:
            yield ("" if started else "\n") + "\n".join(items) + "\n"
            started = True
    if last := "".join(carry).strip():
        yield ("" if started else "\n") + last + "\n"


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
            reader = _Reader(resolved, errors, lowercase, lines, b1)
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
            reader = _Reader(resolved, errors, lowercase, lines, b2)
            _write_folder(folder, reader, tok, meta, signals)
    return meta


def _vocabulary(
    reader: _Reader, source: str, tokenizer: str, max_vocab: int | None
) -> tuple[Tokenizer, int]:
    """Pass 1: the vocabulary of ``tokenizer``'s kind and the characters streamed."""
    chars = 0
    empty = f"{source}: " + ("holds no non-empty line" if reader.lines else "the text is empty")
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
            raise CorpusError(empty)
        tok: Tokenizer = (
            CharTokenizer(sorted(symbols))
            if max_vocab is None
            else CharTokenizer.from_counts(char_counts, max_vocab)
        )
        return tok, chars
    if tokenizer == "bpe":
        seen = [0]  # characters streamed into training

        def counted(pieces: Iterator[str]) -> Iterator[str]:
            for piece in pieces:
                seen[0] += len(piece)
                yield piece

        try:
            tok = BPETokenizer.train(counted(_word_pieces(reader.chunks())), max_vocab)
        except TokenizerError:
            if not seen[0]:
                raise CorpusError(empty) from None
            raise
        return tok, seen[0]
    counts: Counter[str] = Counter()
    for piece in _word_pieces(reader.chunks()):
        counts.update(WORD_PATTERN.findall(piece))
        chars += len(piece)
    if not counts:
        raise CorpusError(empty)
    return WordTokenizer.from_counts(counts, max_vocab), chars


def _write_folder(
    folder: Path, reader: _Reader, tok: Tokenizer, meta: dict[str, Any], signals: _Signals
) -> None:
    """Pass 2 into fresh temporaries in ``folder``, then the commit; on any failure or signal
    the temporaries (and a folder this call created, if left empty) are removed."""
    created = _missing_ancestor(folder)
    staged: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in _leftovers(folder):
            stale.unlink(missing_ok=True)
        tag = secrets.token_hex(6)  # named before it exists, so a signal cannot orphan it
        staged_tokens = folder / f".{TOKENS}.{tag}.partial"
        staged_tok = folder / f".{TOKENIZER}.{tag}.partial"
        staged_meta = folder / f".{META}.{tag}.partial"
        staged += [staged_tokens, staged_tok, staged_meta]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(staged_tokens, flags, 0o666), "wb") as sink:
            meta["tokens"] = _encode_into(sink, reader, tok, np.dtype(meta["dtype"]), meta)
            sink.flush()
            os.fsync(sink.fileno())
        meta["files"] = reader.files_used
        if reader.lines:
            meta["items"] = reader.items
        meta["split"] = int(meta["tokens"] * 0.9)
        tok.save(staged_tok)
        atomic_write_json(staged_meta, meta)
        with signals.held():
            (folder / META).unlink(missing_ok=True)  # from here the folder reads as half-written
            os.replace(staged_tokens, folder / TOKENS)
            os.replace(staged_tok, folder / TOKENIZER)
            os.replace(staged_meta, folder / META)
    except BaseException as exc:
        for path in staged:
            with contextlib.suppress(OSError):
                path.unlink()
        _remove_empty(folder, created)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        raise


def _encode_into(
    sink: Any, reader: _Reader, tok: Tokenizer, dtype: np.dtype, meta: dict[str, Any]
) -> int:
    """Pass 2: encode the stream into ``sink``; CorpusError when the source changed since
    pass 1 (new symbols, or other bytes). Returns the token count."""
    source = meta["source"]
    count = 0
    pieces = reader.chunks() if meta["tokenizer"] == "char" else _word_pieces(reader.chunks())
    for piece in pieces:
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


def _missing_ancestor(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (None if it does)."""
    missing = None
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing = path
    return missing


def _remove_empty(folder: Path, created: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``created`` while they are empty."""
    if created is None:
        return
    path = folder
    while True:
        try:
            path.rmdir()
        except OSError:
            return
        if path == created:
            return
        path = path.parent


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not an encoding Python knows") from None


# --------------------------------------------------------------------------- novelty index


def novelty_stamp(prepared: PreparedData, train_tokens: int) -> dict[str, Any]:
    """What a saved novelty index was built from: the data folder's checksum, sizes and
    options, a hash of its vocabulary, and how many leading tokens (the training split) it
    covers. An index is used only when this equals the stamp of the data there now."""
    meta = prepared.meta
    vocab = json.dumps(prepared.tokenizer.to_dict(), sort_keys=True, ensure_ascii=True)
    keys = ("source_sha256", "tokens", "chars", "dtype", "vocab_size", "tokenizer")
    return {
        "format": NOVELTY_FORMAT,
        "version": VERSION,
        "data": {k: meta.get(k) for k in (*keys, "encoding", "errors", "lowercase")},
        "tokenizer_sha256": hashlib.sha256(vocab.encode("ascii")).hexdigest(),
        "train_tokens": train_tokens,
    }


def build_novelty_index(
    folder: str | os.PathLike[str], *, val_fraction: float = NOVELTY_VAL_FRACTION
) -> dict[str, Any]:
    """Build and save the novelty index of prepared data ``folder``: a suffix array over its
    first ``1 - val_fraction`` of the ids (``data.split_ids``), in ``folder/novelty/``.

    ConfigError for word or BPE data (``NOVELTY_CHAR_ONLY``). ``built_from.json`` is removed
    first and written last, so an interrupted build leaves no index a run would use. Returns
    ``{"path", "chars", "bytes", "seconds"}``.
    """
    from chargen.novelty import CorpusIndex

    prepared = open_prepared(folder)
    if prepared.tokenizer.kind != "char":
        raise ConfigError(NOVELTY_CHAR_ONLY)
    if prepared.meta.get("lines", False):
        raise ConfigError(NOVELTY_NOT_LINES)
    train, _ = split_ids(prepared.ids, val_fraction)
    target = prepared.path / NOVELTY_DIR
    try:
        (target / NOVELTY_BUILT_FROM).unlink(missing_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}") from None
    start = time.perf_counter()
    index = CorpusIndex.from_ids(train, prepared.tokenizer.vocab)
    index.save(target)
    atomic_write_json(target / NOVELTY_BUILT_FROM, novelty_stamp(prepared, len(train)))
    return {
        "path": str(target),
        "chars": len(index),
        "bytes": index.nbytes,
        "seconds": time.perf_counter() - start,
    }


def open_novelty_index(prepared: PreparedData, train_tokens: int) -> tuple[Any, str]:
    """``(index, "")`` when ``prepared`` holds a novelty index built from its current data over
    its first ``train_tokens`` ids, memory-mapped; else ``(None, reason)``, the reason one line
    (empty when the folder simply has no index)."""
    from chargen.novelty import META as INDEX_META
    from chargen.novelty import CorpusIndex

    target = prepared.path / NOVELTY_DIR
    if not os.path.lexists(target / INDEX_META) and not os.path.lexists(
        target / NOVELTY_BUILT_FROM
    ):
        return None, ""
    try:
        stamp = loads_bounded(read_regular(target / NOVELTY_BUILT_FROM, CorpusError, 1 << 20))
    except (ChargenError, ValueError):
        return None, f"{target}: incomplete novelty index (no readable {NOVELTY_BUILT_FROM})"
    expected = novelty_stamp(prepared, train_tokens)
    if not isinstance(stamp, dict) or any(
        stamp.get(k) != expected[k] for k in ("format", "version", "data", "tokenizer_sha256")
    ):
        return None, (
            f"{target}: stale novelty index (built from other data than {prepared.path} holds now)"
        )
    covered = stamp.get("train_tokens")
    if covered != train_tokens:
        return None, (
            f"{target}: the novelty index covers the first {covered} tokens, this run trained "
            f"on the first {train_tokens} (another --val-fraction)"
        )
    try:
        index = CorpusIndex.load(target, mmap=True)
    except ChargenError as exc:
        return None, str(exc)
    if len(index) != train_tokens or index.alphabet != list(prepared.tokenizer.vocab):
        return None, f"{target}: the novelty index does not match {prepared.path / TOKENS}"
    return index, ""
