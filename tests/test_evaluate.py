"""Validation loss (chargen.evaluate) against independent oracles on small random models.

* streams: one ``F.cross_entropy`` pass over each whole stream from a zero state, which is
  what reading it ``seq_len`` tokens at a time while carrying the state must equal;
* windows: a hand-written loop over the seed program's windows (``range(0, len - maxlen,
  step)``), each read alone from a zero state, scored on the token after it;
* ``EvalSet`` (the entry point training, ``eval`` and the API share): the part a run holds out,
  cut by hand, scored by those oracles; a list's held-out items each read alone.

Per-character figures divide the summed loss by the characters the target tokens spell, so
the vocabularies here hold tokens of 1-4 characters (and ``<unk>``, which counts 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from chargen.config import ModelConfig, TrainConfig
from chargen.errors import ConfigError
from chargen.evaluate import (
    EvalResult,
    EvalSet,
    evaluate_streams,
    evaluate_windows,
    token_char_lengths,
    unigram_entropy,
)
from chargen.lines import split_items
from chargen.models import build_model
from chargen.tokenizer import UNK

# id 0 is <unk> (1 char); the others spell 1, 2, 3 or 4 characters
VOCAB = [UNK, "a", "bb", "ccc", "dddd", " ", "ef", "g", "hij", "k"]
LENGTHS = np.array([1, 1, 2, 3, 4, 1, 2, 1, 3, 1])


def _model(family: str = "lstm", **overrides: object) -> torch.nn.Module:
    """A small random model in training mode with dropout: evaluation must switch it to eval
    (dropout off) and back."""
    torch.manual_seed(0)
    fields = {
        "family": family,
        "vocab_size": len(VOCAB),
        "embed_dim": 8,
        "hidden_size": 16,
        "num_layers": 2,
        "dropout": 0.5,
        **overrides,
    }
    if family == "transformer":
        fields.update(num_heads=2, context_size=64)
    model = build_model(ModelConfig(**fields))
    model.train()
    return model


def _ids(n: int, seed: int = 1) -> np.ndarray:
    # uint8, as training stores a small vocabulary's ids
    return np.random.default_rng(seed).integers(0, len(VOCAB), size=n).astype(np.uint8)


@torch.no_grad()
def _oracle_nats(model: torch.nn.Module, seq: np.ndarray) -> float:
    """Summed loss of predicting seq[1:] from seq[:-1]: one forward pass from a zero state."""
    was_training = model.training
    model.eval()
    x = torch.from_numpy(seq[:-1].astype(np.int64))[None]
    y = torch.from_numpy(seq[1:].astype(np.int64))
    logits, _ = model(x, None)
    model.train(was_training)
    return float(F.cross_entropy(logits[0].double(), y, reduction="sum"))


def _check(result: EvalResult, nats: float, tokens: int, chars: int) -> None:
    assert result.tokens == tokens
    assert result.chars == chars
    assert result.nats_per_token == pytest.approx(nats / tokens, rel=1e-5)
    assert result.nats_per_char == pytest.approx(nats / chars, rel=1e-5)
    assert result.bits_per_char == pytest.approx(nats / chars / math.log(2), rel=1e-5)


def test_token_char_lengths_count_characters_and_unk_as_one() -> None:
    assert token_char_lengths(VOCAB).tolist() == LENGTHS.tolist()
    assert token_char_lengths(["", "x", UNK, "<unk"]).tolist() == [1, 1, 1, 4]


@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("seq_len", [1, 7, 64, 1000])
def test_streams_equal_one_pass_over_the_whole_sequence(family: str, seq_len: int) -> None:
    """Fewer than 2 x 2048 tokens make one stream: the whole text read in one call.

    Would catch: a state reset between chunks (seq_len 7 reads 43 chunks), a target skipped or
    counted twice at a chunk edge, dropout left on, per-token instead of per-char division.
    """
    model = _model(family)
    ids = _ids(300)
    result = evaluate_streams(model, ids, LENGTHS, seq_len=seq_len)
    _check(result, _oracle_nats(model, ids), 299, int(LENGTHS[ids[1:]].sum()))
    assert model.training  # put back as it was


def test_streams_of_a_transformer_carry_the_cache() -> None:
    """A text shorter than the context: reading it in pieces through the cache equals one pass."""
    model = _model("transformer", embed_dim=16)
    ids = _ids(60)
    result = evaluate_streams(model, ids, LENGTHS, seq_len=9)
    _check(result, _oracle_nats(model, ids), 59, int(LENGTHS[ids[1:]].sum()))


def test_streams_split_a_long_text_into_independent_streams() -> None:
    """6001 tokens: 2 streams (at least 2048 each) of 3000 tokens, each from a zero state; the
    last token, which fills no stream, is left out.

    Would catch: a state carried from one stream into the next, or streams of other lengths.
    """
    model = _model()
    ids = _ids(6001)
    rows = [ids[:3000], ids[3000:6000]]
    nats = sum(_oracle_nats(model, row) for row in rows)
    chars = sum(int(LENGTHS[row[1:]].sum()) for row in rows)
    _check(evaluate_streams(model, ids, LENGTHS, seq_len=128), nats, 2 * 2999, chars)


def test_streams_read_at_most_max_tokens() -> None:
    """``max_tokens`` 100 of 1000: the first 101 tokens give 100 targets, the rest is unread."""
    model = _model()
    ids = _ids(1000)
    result = evaluate_streams(model, ids, LENGTHS, max_tokens=100, seq_len=16)
    _check(result, _oracle_nats(model, ids[:101]), 100, int(LENGTHS[ids[1:101]].sum()))
    changed = ids.copy()
    changed[101:] = (changed[101:] + 1) % len(VOCAB)  # tokens past the limit do not count
    assert evaluate_streams(model, changed, LENGTHS, max_tokens=100, seq_len=16) == result


@torch.no_grad()
def _oracle_windows(
    model: torch.nn.Module, ids: np.ndarray, maxlen: int, step: int
) -> tuple[float, int, int]:
    """The seed program's loop: for i in range(0, len(text) - maxlen, step), the window
    text[i : i + maxlen] predicts text[i + maxlen]; each window read alone from a zero state."""
    was_training = model.training
    model.eval()
    nats, tokens, chars = 0.0, 0, 0
    for i in range(0, len(ids) - maxlen, step):
        window = torch.tensor(ids[i : i + maxlen], dtype=torch.long)[None]
        target = int(ids[i + maxlen])
        logits, _ = model(window, None)
        nats += float(-torch.log_softmax(logits[0, -1].double(), dim=-1)[target])
        tokens += 1
        chars += int(LENGTHS[target])
    model.train(was_training)
    return nats, tokens, chars


@pytest.mark.parametrize("family", ["lstm", "gru", "transformer"])
@pytest.mark.parametrize("maxlen, step", [(10, 3), (7, 1), (20, 7)])
def test_windows_equal_the_seed_programs_loop(family: str, maxlen: int, step: int) -> None:
    """Batches of 4 windows (the last one partial): each window's loss on the token after it.

    Would catch: an off-by-one window or target, a window that continues the state of the one
    before, the loss of every position instead of the last, a batch edge dropped.
    """
    model = _model(family, embed_dim=16)
    ids = _ids(203)
    result = evaluate_windows(model, ids, LENGTHS, maxlen=maxlen, step=step, batch_size=4)
    nats, tokens, chars = _oracle_windows(model, ids, maxlen, step)
    assert tokens == len(range(0, 203 - maxlen, step))
    _check(result, nats, tokens, chars)
    assert model.training


@pytest.mark.parametrize("step, max_tokens, windows", [(1, 50, 50), (3, 51, 17)])
def test_windows_read_at_most_max_tokens(step: int, max_tokens: int, windows: int) -> None:
    """Windows of 10 over the first ``max_tokens + 10`` tokens: with step 1, 50 windows for
    ``max_tokens`` 50 (one target each); with step 3, those starting at 0, 3, ..., 48 for 51.
    Tokens past them do not count (one token more or less would change the count)."""
    model = _model()
    ids = _ids(500)
    kwargs = {"maxlen": 10, "step": step, "max_tokens": max_tokens}
    result = evaluate_windows(model, ids, LENGTHS, **kwargs)
    nats, tokens, chars = _oracle_windows(model, ids[: max_tokens + 10], 10, step)
    assert tokens == windows
    _check(result, nats, tokens, chars)
    changed = ids.copy()
    changed[max_tokens + 10 :] = (changed[max_tokens + 10 :] + 1) % len(VOCAB)
    assert evaluate_windows(model, changed, LENGTHS, **kwargs) == result


def test_per_char_figures_follow_the_characters_of_the_targets() -> None:
    """The same ids scored as 1-char tokens and as multi-char tokens: the summed loss is the
    same, only the character count differs (so nats/char scales by tokens / chars)."""
    model = _model()
    ids = _ids(400)
    ones = evaluate_streams(model, ids, np.ones(len(VOCAB), dtype=np.int64))
    multi = evaluate_streams(model, ids, LENGTHS)
    assert ones.chars == ones.tokens == 399 and multi.chars == int(LENGTHS[ids[1:]].sum())
    assert multi.chars > multi.tokens
    assert multi.nats_per_token == pytest.approx(ones.nats_per_token, rel=1e-6)
    assert multi.nats_per_char == pytest.approx(ones.nats_per_char * 399 / multi.chars, rel=1e-6)


def test_unigram_entropy_is_that_of_the_token_frequencies() -> None:
    ids = np.array([0, 0, 1, 2, 2, 2, 2, 5])  # p = 2/8, 1/8, 4/8, 1/8
    expected = -sum(p * math.log(p) for p in (0.25, 0.125, 0.5, 0.125))
    assert unigram_entropy(ids, 8) == pytest.approx(expected)
    assert unigram_entropy(np.zeros(10, dtype=np.int64), 3) == 0.0


# ------------------------------------------------------------- EvalSet, the entry point
@pytest.mark.parametrize("part", ["validation", "all"])
@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_eval_set_scores_the_part_a_run_holds_out_as_it_trains(part: str, batching: str) -> None:
    model, ids = _model(), _ids(700, seed=4)
    train = TrainConfig(val_fraction=0.2, batching=batching, maxlen=12, window_step=5)
    chosen = EvalSet.of_run(ids, VOCAB, train, lines=False, part=part)
    held = ids if part == "all" else ids[560:]  # the oracle: the last 20% by hand
    assert chosen.ids.tolist() == held.tolist() and chosen.scheme == batching
    if batching == "streams":
        # under its max_tokens (2,048 per stream), one stream: one pass over the whole part
        _check(
            chosen.evaluate(model),
            _oracle_nats(model, held),
            len(held) - 1,
            int(LENGTHS[held[1:]].sum()),
        )
    else:
        _check(chosen.evaluate(model), *_oracle_windows(model, held, 12, 5))


def test_eval_set_of_a_list_scores_whole_held_out_items() -> None:
    model = _model()
    vocab = ["\n", *VOCAB[1:]]  # the boundary is token 0 here
    rng = np.random.default_rng(5)
    items = [rng.integers(1, len(vocab), size=rng.integers(1, 6)).tolist() for _ in range(40)]
    ids = np.array([0] + [t for item in items for t in (*item, 0)], dtype=np.uint8)
    train = TrainConfig(val_fraction=0.25)
    chosen = EvalSet.of_run(ids, vocab, train, lines=True)
    _, held = split_items(40, 0.25)
    assert chosen.scheme == "items" and chosen.items is not None
    assert chosen.items.tolist() == held.tolist() and chosen.scored == "the 10 validation items"
    # the oracle: each held-out item read alone from a zero state, <B> item -> item <B>
    nats = sum(_oracle_nats(model, np.array([0, *items[k], 0])) for k in held.tolist())
    tokens = sum(len(items[k]) + 1 for k in held.tolist())
    chars = sum(int(LENGTHS[items[k]].sum()) + 1 for k in held.tolist())
    _check(chosen.evaluate(model), nats, tokens, chars)
    every = EvalSet.of_run(ids, vocab, train, lines=True, part="all")
    assert every.items is not None and every.items.tolist() == list(range(40))


def test_eval_set_refuses_what_it_cannot_score() -> None:
    with pytest.raises(ConfigError, match="part must be validation or all"):
        EvalSet.of_run(_ids(100), VOCAB, TrainConfig(), lines=False, part="test")
    with pytest.raises(ConfigError, match="x.txt: too little text to evaluate"):
        EvalSet.of_run(_ids(1), VOCAB, TrainConfig(), lines=False, part="all", name="x.txt")
