"""The saved novelty index of a prepared data folder (``--novelty-index``, character corpora
only): the suffix array of the training split in ``DATA_DIR/novelty/``, with
``built_from.json`` stamping the data it was built from (``novelty_stamp``), so an index left
from an earlier preparation is never used for new data (``open_novelty_index``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from chargen.atomic import atomic_write_json, loads_bounded, read_regular
from chargen.data import split_ids
from chargen.errors import ChargenError, CheckpointError, ConfigError, CorpusError
from chargen.prepare_folder import TOKENS, VERSION, PreparedData, open_prepared

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


def check_novelty_index(tokenizer: str, lines: bool) -> None:
    """ConfigError unless data of ``tokenizer`` kind (framed as a list when ``lines``) can have
    a saved novelty index: char prose only. Checked before ``prepare`` reads anything."""
    if tokenizer != "char":
        raise ConfigError(NOVELTY_CHAR_ONLY)
    if lines:
        raise ConfigError(NOVELTY_NOT_LINES)


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
    check_novelty_index(prepared.tokenizer.kind, bool(prepared.meta.get("lines", False)))
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
