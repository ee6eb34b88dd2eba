"""The streaming reader of ``chargen prepare``: a resolved source as normalised text chunks
(files decoded incrementally, BOM dropped, CRLF / CR -> LF across chunk edges, optional
lower-casing that waits for each word's end), the SHA-256 of the bytes read, and the re-cutting
of that stream into ``--lines`` items (``_line_items``) or into pieces no word token spans
(``_word_pieces``). Memory stays bounded by the chunk size the caller passes.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from chargen.atomic import open_regular
from chargen.corpus import BINARY_PROBE, ResolvedSource
from chargen.errors import CorpusError, DecodeError


class _Reader:
    """Streams a resolved source as normalised text chunks, hashing the bytes it reads."""

    def __init__(
        self,
        resolved: ResolvedSource,
        errors: str,
        lowercase: bool,
        lines: bool,
        bar: tqdm,
        chunk_bytes: int,
    ) -> None:
        self.resolved = resolved
        self.chunk_bytes = chunk_bytes  # bytes (or characters of a built text) read at a time
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
            size = self.chunk_bytes
            yield from self._normalise(
                iter([data[i : i + size] for i in range(0, len(data), size)])
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
                block = handle.read(self.chunk_bytes)
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
