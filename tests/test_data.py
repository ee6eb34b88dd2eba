"""Batching schemes (every token is a target once per epoch, windows match the seed's layout)
and ``load_ids``, the ids of any source: text and prepared folders give the same."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from chargen.config import DataConfig
from chargen.data import (
    StreamBatches,
    WindowBatches,
    eval_streams,
    load_ids,
    smallest_id_dtype,
    split_ids,
)
from chargen.errors import ConfigError, TrainingError
from chargen.lines import items_of, lines_text
from chargen.prepare import prepare
from chargen.tokenizer import build_tokenizer


def test_split_is_first_90_percent() -> None:
    ids = np.arange(1000)
    train, val = split_ids(ids, 0.1)
    assert len(train) == 900 and train[-1] == 899 and val[0] == 900
    with pytest.raises(TrainingError, match="validation"):
        split_ids(np.arange(5), 0.1)


def test_streams_cover_each_position_once_per_epoch() -> None:
    ids = np.arange(10_000)
    batches = StreamBatches(ids, batch_size=8, seq_len=16, seed=0)
    seen = []
    for step in range(batches.steps_per_epoch):
        x, y = batches.batch(0, step)
        assert x.shape == (8, 16) and y.shape == (8, 16)
        assert np.array_equal(y.numpy(), x.numpy() + 1)  # targets are the next tokens
        seen.append(y.numpy().ravel())
    targets = np.concatenate(seen)
    assert len(np.unique(targets)) == len(targets)  # no target read twice
    assert len(targets) > 0.95 * len(ids)
    # consecutive steps continue each stream (the carried state lines up with the text)
    x0, _ = batches.batch(0, 0)
    x1, _ = batches.batch(0, 1)
    assert np.array_equal(x1[:, 0].numpy(), x0[:, -1].numpy() + 1)


def test_streams_shift_between_epochs_and_are_deterministic() -> None:
    """Each epoch starts at an offset in [0, seq_len) (0 for the first), the same for every
    instance with the same seed (a resume rebuilds the batches), another for another seed; the
    batches of an epoch start at its offset.

    Would catch: offsets drawn from a global or unseeded RNG (a resumed run would read other
    batches), offsets that never move, a batch that ignores the offset."""
    ids = np.arange(50_000)
    batches = StreamBatches(ids, batch_size=4, seq_len=32, seed=3)
    offsets = [batches.offset(e) for e in range(40)]
    assert offsets[0] == 0
    assert all(0 <= o < 32 for o in offsets)
    assert len(set(offsets[1:])) > 5  # the truncation points move
    np.random.seed(12345)  # the global RNG plays no part
    again = StreamBatches(ids, batch_size=4, seq_len=32, seed=3)
    assert [again.offset(e) for e in reversed(range(40))] == offsets[::-1]  # any order
    other = StreamBatches(ids, batch_size=4, seq_len=32, seed=4)
    assert [other.offset(e) for e in range(40)] != offsets
    for epoch in (0, 1, 7):
        x, y = batches.batch(epoch, 2)
        x_again, y_again = again.batch(epoch, 2)
        assert torch.equal(x, x_again) and torch.equal(y, y_again)
        assert x[0, 0] == offsets[epoch] + 2 * 32  # ids are positions: row 0 starts there


def test_small_text_gets_fewer_streams() -> None:
    batches = StreamBatches(np.arange(300), batch_size=64, seq_len=32)
    assert 1 <= batches.batch_size < 64
    with pytest.raises(TrainingError, match="too few"):
        StreamBatches(np.arange(40), batch_size=4, seq_len=32)


def test_windows_match_the_seed_layout() -> None:
    ids = np.arange(1000)
    batches = WindowBatches(ids, batch_size=128, maxlen=60, step=3, seed=0)
    assert len(batches.starts) == len(range(0, 1000 - 60, 3))
    all_starts = []
    for step in range(batches.steps_per_epoch):
        x, y = batches.batch(0, step)
        assert x.shape[1] == 60
        assert np.array_equal(y.numpy(), x[:, -1].numpy() + 1)
        all_starts.extend(x[:, 0].tolist())
    assert sorted(all_starts) == list(range(0, 940, 3))
    assert batches.batch(1, 0)[0][:, 0].tolist() != batches.batch(0, 0)[0][:, 0].tolist()


def test_id_dtype_and_eval_streams() -> None:
    assert smallest_id_dtype(59) == np.uint8
    assert smallest_id_dtype(300) == np.uint16
    assert smallest_id_dtype(70_000) == np.int32
    grid = eval_streams(np.arange(100_000), max_tokens=50_000)
    assert grid.shape[0] == 16 and grid.size <= 50_001


# ------------------------------------------------------------------ load_ids: any source
@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("kind", ["char", "word"])
def test_load_ids_reads_text_and_prepared_folders_alike(
    tmp_path: Path, kind: str, lines: bool
) -> None:
    text = "".join(f"  name{i % 13} the {i * 7 % 31}\r\n" for i in range(300)) + "\n\nlast"
    source = tmp_path / "list.txt"
    source.write_bytes(text.encode("utf-8"))
    read = text.replace("\r\n", "\n")  # the oracle: the text as read, framed, encoded whole
    framed = lines_text(items_of(read)) if lines else read
    expected = build_tokenizer(kind, framed).encode(framed, unknown="error")
    data = DataConfig(source=str(source), tokenizer=kind, lines=lines)
    raw = load_ids(data)
    assert raw.ids.tolist() == expected.tolist() and raw.ids.dtype == np.uint8
    assert raw.sha256 == hashlib.sha256(framed.encode("utf-8")).hexdigest()
    prepare(str(source), tmp_path / "prepared", tokenizer=kind, lines=lines, progress=False)
    folder = dataclasses.replace(data, source=str(tmp_path / "prepared"))
    ready = load_ids(folder, raw.tokenizer)
    assert ready.ids.tolist() == expected.tolist()
    assert ready.tokenizer.to_dict() == raw.tokenizer.to_dict()
    # an encoding with a given tokenizer keeps it (unknown symbols as told)
    other = load_ids(data, build_tokenizer(kind, framed[: len(framed) // 2]), unknown="drop")
    assert len(other.ids) <= len(expected)


def test_load_ids_refuses_a_folder_prepared_another_way(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("".join(f"item{i}\n" for i in range(50)), encoding="utf-8")
    prepare(str(source), tmp_path / "listed", lines=True, progress=False)
    folder = str(tmp_path / "listed")
    with pytest.raises(ConfigError, match="prepared with --lines and the run reads it without"):
        load_ids(DataConfig(source=folder))
    with pytest.raises(ConfigError, match="another vocabulary"):
        load_ids(DataConfig(source=folder, lines=True), build_tokenizer("char", "abc\n"))
    listed = load_ids(DataConfig(source=folder, lines=True)).ids
    assert listed.tolist() == load_ids(DataConfig(source=str(source), lines=True)).ids.tolist()
