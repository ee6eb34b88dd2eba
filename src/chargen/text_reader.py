"""The one reader of source text: files (or a text built in memory) as normalised text chunks.

``load_corpus`` joins its chunks; ``chargen prepare`` streams them. The rules live here once:
strict decoding unless told otherwise (undecodable bytes are a one-line ``DecodeError`` naming
the file, the byte offset and the fix), a file whose first ``BINARY_PROBE`` bytes hold a NUL is
refused as binary when it is the only file (for encodings where NUL is not text), a BOM at the
start of each file is dropped, CRLF and lone CR become LF, ``lowercase`` lower-cases, and with
several files each file's text ends with a newline. Chunk edges never change the text: bytes are
decoded incrementally (a character split across reads is kept whole), a CR waits for the next
chunk's LF, and lower-casing waits for the end of each word (see ``TextReader``).
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from chargen.atomic import open_regular
from chargen.errors import ConfigError, CorpusError, DecodeError

if TYPE_CHECKING:
    from chargen.corpus import ResolvedSource

BINARY_PROBE = 8192  # a file whose first 8 KiB hold a NUL byte is taken for binary
ERROR_HANDLERS = ("strict", "replace", "ignore")
READ_BYTES = 1 << 20  # bytes (or characters of a built text) read at a time by default
MAX_WORD = 1 << 16  # characters a word waiting to be lower-cased may hold (prepare's bound)
_UP_TO_LAST_SPACE = re.compile(r".*\s", re.DOTALL)  # ``\s`` is ``str.isspace``, as in ``lower``


# --- the rules ----------------------------------------------------------------------------


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


def decode_error(path: str | Path, byte: int, offset: int, encoding: str) -> DecodeError:
    """The one-line DecodeError for byte ``byte`` at ``offset`` of ``path``, with the fix."""
    return DecodeError(
        f"{path}: byte 0x{byte:02x} at offset {offset} is not valid {encoding}; "
        "pass --encoding latin-1 (or the file's encoding) or --errors replace"
    )


def decode_bytes(data: bytes, path: str, encoding: str, errors: str) -> str:
    """Decode with a one-line DecodeError naming the file, the byte offset and the fix."""
    check_decoding(encoding, errors)
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        raise decode_error(path, data[exc.start], exc.start, encoding) from None


@functools.lru_cache(maxsize=32)
def _nul_means_binary(encoding: str) -> bool:
    """False for encodings whose text holds NUL bytes anyway (UTF-16, UTF-32)."""
    try:
        return b"\x00" not in "a\n".encode(encoding)
    except (LookupError, UnicodeError):
        return True


def looks_binary(data: bytes, encoding: str = "utf-8") -> bool:
    """A NUL byte in the first ``BINARY_PROBE`` bytes, for encodings where NUL is not text."""
    return _nul_means_binary(encoding) and b"\x00" in data[:BINARY_PROBE]


def binary_error(path: str | Path) -> CorpusError:
    """The one-line CorpusError for a lone source file that looks binary."""
    return CorpusError(f"{path}: looks like a binary file (it holds NUL bytes), not text")


def stream_text(data: bytes, name: str, encoding: str, errors: str, lowercase: bool) -> str:
    """Bytes read from a stream (stdin) as ``TextReader`` reads a file: decoded with a one-line
    DecodeError naming ``name``, the BOM dropped, newlines and case normalised."""
    from chargen.corpus import ResolvedSource  # corpus.py imports this module

    text = decode_bytes(data, name, encoding, errors)
    built = ResolvedSource(name, (), encoding, text)
    return "".join(TextReader(built, errors, lowercase, max_word=None).chunks())


# --- the reader ---------------------------------------------------------------------------


class TextReader:
    """A resolved source as normalised text chunks whose join is the source's whole text.

    ``chunk_bytes`` bounds each read (bytes of a file, characters of a built text). Lower-casing
    waits for each word's end, since a capital sigma's lower case depends on its neighbours and
    whitespace ends that context; ``max_word`` (None: no bound) caps how many characters a word
    may hold before it is lower-cased in pieces. ``files`` lists the files read (a file left
    out for undecodable bytes, with ``skip_undecodable``, is not listed).
    """

    def __init__(
        self,
        resolved: ResolvedSource,
        errors: str = "strict",
        lowercase: bool = False,
        *,
        chunk_bytes: int = READ_BYTES,
        max_word: int | None = MAX_WORD,
    ) -> None:
        self.resolved = resolved
        self.errors = errors
        self.lowercase = lowercase
        self.chunk_bytes = chunk_bytes
        self.max_word = max_word
        self.files: list[str] = []

    def _seen_bytes(self, block: bytes) -> None:
        """Called with each block of file bytes as it is read (a hook: hashing, progress)."""

    def _seen_text(self, text: str) -> None:
        """Called once with a built text before it is read (a hook: hashing, progress)."""

    def chunks(self) -> Iterator[str]:
        """The normalised text in chunks (none empty); ``files`` is complete once exhausted."""
        self.files = []
        text = self.resolved.text
        if text is not None:
            self._seen_text(text)
            size = self.chunk_bytes
            yield from self._normalise(text[i : i + size] for i in range(0, len(text), size))
            return
        many = len(self.resolved.paths) > 1
        for path in self.resolved.paths:
            pieces: Iterable[str] = self._decoded(path, binary_check=not many)
            if self.resolved.skip_undecodable:  # small files: decode whole, leave out on failure
                try:
                    pieces = list(pieces)
                except DecodeError:
                    continue
            ended_with_newline = True
            for chunk in self._normalise(pieces):
                ended_with_newline = chunk.endswith("\n")
                yield chunk
            self.files.append(str(path))
            if many and not ended_with_newline:
                yield "\n"

    def _decoded(self, path: Path, *, binary_check: bool) -> Iterator[str]:
        """The text of one file, decoded incrementally (a character split across reads waits)."""
        encoding = self.resolved.encoding
        decoder = codecs.getincrementaldecoder(encoding)(self.errors)
        offset = 0  # bytes of the file before ``block``
        size = max(self.chunk_bytes, BINARY_PROBE) if binary_check else self.chunk_bytes
        with open_regular(path, CorpusError) as handle:
            while True:
                try:
                    block = handle.read(size)
                except OSError as exc:
                    raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
                if binary_check and looks_binary(block, encoding):
                    raise binary_error(path)
                binary_check, size = False, self.chunk_bytes
                self._seen_bytes(block)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:  # exc.object: the bytes held back, then block
                    start = offset - (len(exc.object) - len(block)) + exc.start
                    raise decode_error(path, exc.object[exc.start], start, encoding) from None
                offset += len(block)
                if text:
                    yield text
                if not block:
                    return

    def _normalise(self, chunks: Iterable[str]) -> Iterator[str]:
        """One file's chunks with the BOM dropped, CRLF / CR -> LF and optional lower-casing,
        all across chunk edges."""
        held = ""  # a CR whose LF may open the next chunk
        word: list[str] = []  # text after the last whitespace, waiting to be lower-cased
        waiting = 0  # characters in ``word``
        first = True
        for chunk in chunks:
            if held:
                chunk, held = held + chunk, ""
            if first:
                chunk, first = chunk.removeprefix("\ufeff"), False
            if chunk.endswith("\r"):
                chunk, held = chunk[:-1], "\r"
            if "\r" in chunk:
                chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
            if self.lowercase:
                found = _UP_TO_LAST_SPACE.match(chunk)
                if found is None:  # no whitespace: the word goes on, unless it grew too long
                    word.append(chunk)
                    waiting += len(chunk)
                    if self.max_word is None or waiting < self.max_word:
                        continue
                    chunk, word, waiting = "".join(word).lower(), [], 0
                else:
                    cut = found.end()
                    rest = chunk[cut:]
                    chunk = ("".join(word) + chunk[:cut]).lower()
                    word, waiting = ([rest], len(rest)) if rest else ([], 0)
            if chunk:
                yield chunk
        tail = "".join(word).lower() + ("\n" if held else "")
        if tail:
            yield tail
