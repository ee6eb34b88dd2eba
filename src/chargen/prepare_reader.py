"""The streaming reader of ``chargen prepare``: ``text_reader.TextReader`` (the one reader
``load_corpus`` uses too) with the SHA-256 of the bytes read, a progress bar, and the re-cutting
of the stream into ``--lines`` items (``_line_items``). Memory stays bounded by the chunk size
the caller passes (and, with ``lines``, the longest line).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from tqdm import tqdm

from chargen.corpus import ResolvedSource
from chargen.text_reader import TextReader
from chargen.tokenizer_plain import cut_at_words as _word_pieces

__all__ = ["_Reader", "_line_items", "_word_pieces"]


class _Reader(TextReader):
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
        super().__init__(resolved, errors, lowercase, chunk_bytes=chunk_bytes)
        self.lines = lines
        self.bar = bar
        self.sha = hashlib.sha256()
        self.items = 0  # with ``lines``: the items streamed

    @property
    def files_used(self) -> int:
        """Files read so far (complete once ``chunks`` is exhausted)."""
        return len(self.files)

    def _seen_bytes(self, block: bytes) -> None:
        self.sha.update(block)
        self.bar.update(len(block))

    def _seen_text(self, text: str) -> None:
        self.sha.update(text.encode("utf-8", "surrogatepass"))
        self.bar.update(len(text))

    def chunks(self) -> Iterator[str]:
        """The normalised text in chunks; with ``lines`` its ``--lines`` text, items counted."""
        if not self.lines:
            yield from super().chunks()
            return
        boundaries = 0
        for piece in _line_items(super().chunks()):
            boundaries += piece.count("\n")
            yield piece
        self.items = max(0, boundaries - 1)


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
