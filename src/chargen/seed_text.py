"""The run's own seed text: the playground's default prompt (and the exported site's).

The trainer draws its samples from one fixed window of the training text
(``Trainer.sample_texts``: ``SEED_TEXT_CHARS`` tokens from ``seed_start``, drawn from the run's
seed), so a prompt taken from there holds only symbols the model knows and reads like its
corpus. Looked up in this order:

1. the ``seed_text`` of the run's sample records in ``metrics.jsonl`` (what the trainer used);
2. the same window recomputed from the run's corpus, read as ``eval`` reads it
   (``run_novelty.open_run_corpus``); a corpus that would have to be downloaded is not;
3. an empty prompt, with a note saying why.

A ``--lines`` run's items each start at the line boundary, so its natural prompt is empty.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chargen.config import RunConfig
from chargen.errors import ChargenError
from chargen.tokenizer import Tokenizer


@dataclass(frozen=True)
class SeedText:
    """``text``: the default prompt; ``origin``: ``samples`` | ``corpus`` | ``lines`` | ``none``;
    ``note``: one line for the page when the prompt is empty for a reason it should tell."""

    text: str
    origin: str
    note: str | None = None


def recorded_seed_text(metrics: list[dict[str, Any]]) -> str | None:
    """The seed text of the latest sample record, None when the run logged no samples."""
    for record in reversed(metrics):
        if record.get("kind") == "sample" and isinstance(record.get("seed_text"), str):
            return str(record["seed_text"])
    return None


def corpus_seed_text(config: RunConfig, tokenizer: Tokenizer) -> str:
    """The trainer's sample window recomputed from the run's corpus (ChargenError, OSError when
    the corpus cannot be read here)."""
    from chargen.data import split_ids
    from chargen.run_novelty import open_run_corpus
    from chargen.training import SEED_TEXT_CHARS, seed_text_start

    _refuse_download(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown symbols: the trainer saw the same ids
        ids = open_run_corpus(config, tokenizer).ids(tokenizer)
    train, _ = split_ids(ids, config.train.val_fraction)
    start = seed_text_start(config.train.seed, len(train))
    window = np.asarray(train[start : start + SEED_TEXT_CHARS], dtype=np.int64)
    return tokenizer.decode(window)


def _refuse_download(config: RunConfig) -> None:
    """A server never downloads: a named corpus with no local copy counts as unavailable."""
    from chargen.corpus import NAMED_CORPORA, _local_copy
    from chargen.errors import CorpusError

    source = config.data.source
    named = NAMED_CORPORA.get(source)
    if named is None or named.offline or Path(source).exists():
        return
    if _local_copy(named, config.data.data_dir) is None:
        raise CorpusError(f"{source}: no local copy")


def seed_text(config: RunConfig, tokenizer: Tokenizer, metrics: list[dict[str, Any]]) -> SeedText:
    """The default prompt of the run (see the module's docstring for the order)."""
    if config.data.lines:
        return SeedText(
            "",
            "lines",
            "each item of this --lines run starts at a line boundary, so an empty prompt starts "
            "a new one; type the beginning of an item to continue it",
        )
    recorded = recorded_seed_text(metrics)
    if recorded:
        return SeedText(recorded, "samples")
    name = Path(str(config.data.source)).name or "its corpus"
    try:
        text = corpus_seed_text(config, tokenizer)
    except (ChargenError, OSError, ValueError):
        text = ""
    if text:
        return SeedText(text, "corpus")
    return SeedText(
        "",
        "none",
        f"the run's corpus ({name}) is not readable here, so the prompt starts empty",
    )
