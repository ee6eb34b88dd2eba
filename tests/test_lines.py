"""One item per line: items, the fixed split, padded examples, and a fresh state per item."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from chargen.config import ModelConfig
from chargen.errors import TrainingError
from chargen.evaluate import evaluate_items, token_char_lengths
from chargen.lines import (
    IGNORE,
    LineBatches,
    item_bounds,
    items_of,
    lines_text,
    padded_examples,
    split_items,
)
from chargen.models import build_model
from chargen.tokenizer import build_tokenizer


def test_items_are_the_stripped_non_empty_lines() -> None:
    assert items_of("emma\n\n  olivia \r\n\t\nava") == ["emma", "olivia", "ava"]
    assert lines_text(["emma", "ava"]) == "\nemma\nava\n"


@given(st.integers(2, 3000), st.sampled_from([0.1, 0.2, 0.5]))
def test_the_split_is_fixed_disjoint_and_complete(count: int, fraction: float) -> None:
    train, val = split_items(count, fraction)
    again = split_items(count, fraction)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert sorted([*train.tolist(), *val.tolist()]) == list(range(count))
    assert len(val) == min(count - 1, max(1, round(count * fraction)))


def test_the_split_is_not_the_tail() -> None:
    _, val = split_items(1000, 0.1)
    assert val.min() < 500 < val.max()


def _list_ids(items: list[str]):
    tokenizer = build_tokenizer("char", lines_text(items))
    ids = tokenizer.encode(lines_text(items))
    return tokenizer, ids, item_bounds(ids, tokenizer.vocab.index("\n"))


def test_examples_frame_each_item_with_the_boundary() -> None:
    tokenizer, ids, bounds = _list_ids(["ab", "c", "dde"])
    x, y = padded_examples(ids, bounds, np.array([0, 1, 2]), pad_id=int(ids[0]))
    decode = tokenizer.vocab.__getitem__
    assert ["".join(decode(i) for i in row if i != IGNORE) for row in y.tolist()] == [
        "ab\n",
        "c\n",
        "dde\n",
    ]
    assert "".join(decode(i) for i in x[1].tolist()[:2]) == "\nc"
    assert (y[1, 2:] == IGNORE).all()


def test_batches_cover_every_training_item_once_an_epoch() -> None:
    items = [f"item{i}" for i in range(23)]
    _, ids, bounds = _list_ids(items)
    train, _ = split_items(len(items), 0.1)
    batches = LineBatches(ids, bounds, train, batch_size=5, seed=1)
    seen = []
    for step in range(batches.steps_per_epoch):
        _, y = batches.batch(0, step)
        seen += [tuple(row[row != IGNORE].tolist()) for row in y]
    assert len(seen) == len(train) and len(set(seen)) == len(train)


def test_a_list_needs_two_items() -> None:
    with pytest.raises(TrainingError, match="at least two"):
        _list_ids(["only"])


def test_an_item_s_loss_does_not_depend_on_the_item_before_it() -> None:
    """Each item is read from a fresh state: the oracle is the item scored alone."""
    items = ["anna", "bob", "carol", "bob"]
    tokenizer, ids, bounds = _list_ids(items)
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, embed_dim=8))
    lengths = token_char_lengths(tokenizer.vocab)
    after_anna = evaluate_items(model, ids, bounds, np.array([1]), lengths)
    after_carol = evaluate_items(model, ids, bounds, np.array([3]), lengths)
    assert after_anna.nats_per_char == pytest.approx(after_carol.nats_per_char, abs=1e-6)
    # and in a batch with a longer item (padding) the same loss again
    both = evaluate_items(model, ids, bounds, np.array([2, 3]), lengths)
    alone = evaluate_items(model, ids, bounds, np.array([2]), lengths)
    total = both.nats_per_char * both.chars
    assert total == pytest.approx(
        alone.nats_per_char * alone.chars + after_carol.nats_per_char * 4, rel=1e-5
    )
    assert both.chars == len("carol\n") + len("bob\n")
