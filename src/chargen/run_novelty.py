"""Novelty against a run's own training data: which items were seen, which spans were copied.

``novelty.py`` knows indexes; this module knows runs. ``RunNovelty.open`` reads a run's corpus
by the rules ``eval`` reads it with (raw text: the run's encoding, error policy, lower-casing and
data folder; a prepared folder: memory-mapped ids, refused when its vocabulary is not the
run's) and takes the part the model trained on:

* prose: the first ``1 - val_fraction`` of the tokens (``data.split_ids``), decoded;
* ``--lines`` runs: the items of the text (``lines.items_of``) split by
  ``lines.split_items``; ``items`` labels a line ``train`` / ``val`` / ``new``, and the
  training text is the training items joined by ``"\\n"``.

``corpus_index()`` builds the suffix array of that text once per ``RunNovelty`` (about
0.04-0.06 s per MB, 5 bytes per character in memory), unless the run's source is a prepared
folder holding an index written by ``chargen prepare --novelty-index`` for the same data and
split: that one is memory-mapped and opens in milliseconds. An index built from other data
(the folder prepared again since) or for another split is not used; a warning says so and the
index is built in memory instead.

For a character tokenizer the index is built over the token ids themselves (``from_ids``), so
a prepared folder's saved index and one built from the raw corpus give the same report; for
word and BPE runs it is built over the decoded training text. Offsets are in characters: of the
queried text, and of the decoded training text.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chargen.config import RunConfig
from chargen.errors import ConfigError
from chargen.novelty import CorpusIndex, ItemIndex, Span
from chargen.prepare import PreparedData
from chargen.tokenizer import Tokenizer

DEFAULT_MIN_SPAN = 20
LARGE_BUILD_CHARS = 50_000_000  # past this, building in memory is worth a hint


@dataclass(frozen=True)
class RunCorpus:
    """A run's own corpus, read as ``eval`` reads it: raw ``text`` or ``prepared`` data."""

    source: str
    text: str | None = None
    prepared: PreparedData | None = None

    def ids(self, tokenizer: Tokenizer) -> np.ndarray:
        """Token ids of the whole corpus (memory-mapped for a prepared folder)."""
        if self.prepared is not None:
            return self.prepared.ids
        assert self.text is not None
        return tokenizer.encode(self.text, unknown="warn")

    def decoded(self, tokenizer: Tokenizer) -> str:
        """The whole corpus as text (a prepared folder's ids decoded)."""
        if self.text is not None:
            return self.text
        return tokenizer.decode(np.asarray(self.ids(tokenizer)))


def open_run_corpus(
    config: RunConfig, tokenizer: Tokenizer, data_dir: str | None = None
) -> RunCorpus:
    """The run's own corpus by ``eval``'s rules; ``data_dir`` overrides the run's data folder.

    ConfigError when a prepared folder holds another vocabulary than the run's tokenizer.
    """
    from chargen.corpus import load_corpus
    from chargen.prepare import is_prepared, open_prepared

    data = config.data
    source = data.source
    if is_prepared(source):
        prepared = open_prepared(source)
        if prepared.tokenizer.to_dict() != tokenizer.to_dict():
            raise ConfigError(f"{source}: prepared with another vocabulary than the run's model")
        return RunCorpus(source, prepared=prepared)
    corpus = load_corpus(
        source,
        encoding=data.encoding,
        errors=data.errors,
        lowercase=data.lowercase,
        data_dir=data_dir or data.data_dir,
        progress=False,
    )
    return RunCorpus(source, text=corpus.text)


class RunNovelty:
    """What of a text a run saw in training: item labels (``--lines`` runs) and copied spans.

    ``items``: an ``ItemIndex`` of the training and validation items for a ``--lines`` run,
    None for prose. ``corpus_index()``: the suffix array of the training text (lazy, cached).
    ``report(text, min_span)``: ``{"longest": {...}, "spans": [...]}`` (see ``novelty.py``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: RunConfig,
        tokenizer: Tokenizer,
        corpus: RunCorpus,
    ) -> None:
        from chargen.lines import item_texts, items_of, split_items

        self.run_dir = Path(run_dir)
        self.config = config
        self.tokenizer = tokenizer
        self.corpus: RunCorpus | None = corpus
        self.items: ItemIndex | None = None
        self._train_items: list[str] | None = None
        self._index: CorpusIndex | None = None
        if config.data.lines:
            all_items = items_of(corpus.decoded(tokenizer))
            train, val = split_items(len(all_items), config.train.val_fraction)
            self._train_items = item_texts(all_items, train)
            self.items = ItemIndex(self._train_items, item_texts(all_items, val))
            self.corpus = None  # the items are all that is needed from here on

    @classmethod
    def open(
        cls,
        run_dir: str | os.PathLike[str],
        config: RunConfig,
        tokenizer: Tokenizer,
        *,
        data_dir: str | None = None,
    ) -> RunNovelty:
        """Read the run's corpus (``open_run_corpus``); the suffix array waits for a query."""
        return cls(run_dir, config, tokenizer, open_run_corpus(config, tokenizer, data_dir))

    # ----------------------------------------------------------------- index

    def corpus_index(self) -> CorpusIndex:
        """The suffix array of the training text: a prepared folder's saved index when it fits
        this run, else built in memory (once; later calls return the same index)."""
        if self._index is None:
            self._index = self._open_index()
        return self._index

    def _open_index(self) -> CorpusIndex:
        if self._train_items is not None:
            return CorpusIndex.build("\n".join(self._train_items))
        from chargen.data import split_ids

        corpus = self.corpus
        assert corpus is not None
        train, _ = split_ids(corpus.ids(self.tokenizer), self.config.train.val_fraction)
        char_run = self.tokenizer.unit == "character"
        if corpus.prepared is not None and char_run:
            from chargen.prepare import open_novelty_index

            saved, reason = open_novelty_index(corpus.prepared, len(train))
            if saved is not None:
                return saved
            if reason:
                warnings.warn(
                    f"{reason}; building the index in memory instead (to store a fresh one: "
                    f"chargen prepare SOURCE --out {corpus.prepared.path} --overwrite "
                    "--novelty-index)",
                    stacklevel=3,
                )
        if len(train) > LARGE_BUILD_CHARS:
            hint = " (`chargen prepare --novelty-index` stores it once)" if corpus.prepared else ""
            warnings.warn(
                f"building a novelty index over {len(train):,} tokens of {corpus.source} in "
                f"memory: about {len(train) * 5 / 1e9:.1f} GB{hint}",
                stacklevel=3,
            )
        if char_run:  # ids are characters: offsets agree with a prepared folder's saved index
            return CorpusIndex.from_ids(np.asarray(train), self.tokenizer.vocab)
        return CorpusIndex.build(self.tokenizer.decode(np.asarray(train)))

    # ----------------------------------------------------------------- queries

    def report(self, text: str, min_span: int = DEFAULT_MIN_SPAN) -> dict[str, Any]:
        """``{"longest": {"length", "text_offset", "corpus_offset"}, "spans": [...]}``: the
        longest piece of ``text`` found verbatim in the training text, and every maximal copied
        span of at least ``min_span`` characters (offsets in characters; ``corpus_offset`` into
        the training text). ConfigError when ``min_span < 1``."""
        if min_span < 1:
            raise ConfigError(f"--min-span must be at least 1, got {min_span}")
        return self.corpus_index().report(text, min_span)


def merge_spans(spans: Iterable[Mapping[str, int] | Span]) -> list[tuple[int, int]]:
    """``(start, end)`` character ranges of the text covered by ``spans`` (report dicts or
    ``Span``), overlapping or touching ones merged, in order: what a page highlights."""
    ranges = sorted(
        (s["text_offset"], s["text_offset"] + s["length"])
        if isinstance(s, Mapping)
        else (s.text_offset, s.text_offset + s.length)
        for s in spans
    )
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
