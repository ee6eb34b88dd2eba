"""A text read against a run (``chargen novelty``, ``chargen neurons``): decoded as the run
decoded its corpus unless told otherwise (``load_text``), and how much of it the run's training
text holds verbatim (``text_novelty``: its copied spans, and for a ``--lines`` run the label of
each of its lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chargen.config import DataConfig
from chargen.run_novelty import RunNovelty


def load_text(
    file: str,
    data: DataConfig,
    read_stdin: Callable[[], bytes],
    *,
    encoding: str | None = None,
    errors: str | None = None,
    lowercase: bool | None = None,
) -> str:
    """FILE, or for ``-`` the bytes ``read_stdin()`` gives, decoded as ``score`` decodes a
    text: with ``data``'s error policy and lower-casing unless given; newlines normalised.
    CorpusError for an empty text or undecodable bytes."""
    from chargen.corpus import check_decoding, load_corpus
    from chargen.errors import CorpusError
    from chargen.text_reader import stream_text

    errors = errors or data.errors
    lowercase = data.lowercase if lowercase is None else lowercase
    if file != "-":
        return load_corpus(
            file, encoding=encoding, errors=errors, lowercase=lowercase, progress=False
        ).text
    check_decoding(encoding, errors)
    text = stream_text(read_stdin(), "stdin", encoding or "utf-8", errors, lowercase)
    if not text.strip():
        raise CorpusError("stdin: the text is empty")
    return text


@dataclass
class TextNovelty:
    """What ``text_novelty`` finds: ``report`` (``RunNovelty.report``: the longest copy and the
    copied spans) and, for a ``--lines`` run, each line with its label and their summary
    (``labelled`` is None for a prose run)."""

    report: dict[str, Any]
    labelled: list[tuple[str, str]] | None = None  # (label, line) of each line
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report, with ``items`` (text, label) and ``summary`` for a ``--lines`` run."""
        if self.labelled is None:
            return self.report
        items = [{"text": item, "label": label} for label, item in self.labelled]
        return {**self.report, "items": items, "summary": self.summary}


def text_novelty(novelty: RunNovelty, text: str, min_span: int) -> TextNovelty:
    """The spans of ``text`` of at least ``min_span`` characters copied from the run's training
    text; for a ``--lines`` run also each line of ``text`` labelled train, val or new."""
    labelled: list[tuple[str, str]] | None = None
    summary = ""
    if novelty.items is not None:  # a --lines run: each line of the text is an item
        from chargen.lines import items_of

        lines = items_of(text)
        labels = novelty.items.labels(lines)
        labelled = list(zip(labels, lines, strict=True))
        summary = novelty.items.summary(labels)
    return TextNovelty(novelty.report(text, min_span), labelled, summary)
