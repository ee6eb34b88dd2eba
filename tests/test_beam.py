"""Beam search against brute force over every sequence, greedy decoding and hand-worked cases."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chargen.beam import MAX_BEAMS, beam_search
from chargen.errors import SamplingError
from chargen.sampling import SamplingConfig

V = 4
NEG_INF = float("-inf")
Rule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, context) -> log p


class PrefixModel:
    """A toy language model whose next-token logits depend on the *whole* prefix.

    The state is one int64 code per row that identifies the prefix read so far, so a beam
    that ends up with another beam's state would score differently: the test sees any
    mistake in gathering states.
    """

    def __init__(self, a: float = 0.7, b: float = 1.3, scale: float = 3.0) -> None:
        self.a, self.b, self.scale = a, b, scale
        self.calls: list[tuple[int, ...]] = []

    def step(self, ids: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert ids.dtype == torch.int64 and ids.dim() == 1 and ids.device.type == "cpu"
        self.calls.append(tuple(ids.shape))
        codes = codes * (V + 1) + ids + 1
        v = torch.arange(V, dtype=torch.float64)
        x = codes.double()[:, None]
        return self.scale * torch.sin(self.a * x * (v + 1) + self.b * v + 0.01 * x), codes

    @staticmethod
    def select(codes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        assert index.dtype == torch.int64 and index.device.type == "cpu"
        return codes[index]


def _log_softmax(logits: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1)


def brute_force(
    model: PrefixModel,
    last: int,
    length: int,
    rule: Rule = _log_softmax,
    history: tuple[int, ...] = (),
) -> list[tuple[list[int], float]]:
    """Every sequence of ``length`` tokens with its summed log-probability, best first."""
    seqs = torch.tensor(list(itertools.product(range(V), repeat=length)), dtype=torch.long)
    n = seqs.shape[0]
    codes = torch.zeros(n, dtype=torch.long)
    ids = torch.full((n,), last, dtype=torch.long)
    total = torch.zeros(n, dtype=torch.float64)
    past = torch.tensor(history, dtype=torch.long).reshape(1, -1).expand(n, -1)
    for t in range(length):
        logits, codes = model.step(ids, codes)
        logp = rule(logits, torch.cat([past, seqs[:, :t]], dim=1))
        total += logp.gather(1, seqs[:, t : t + 1])[:, 0]
        ids = seqs[:, t]
    ranked = sorted(zip(seqs.tolist(), total.tolist(), strict=True), key=lambda r: -r[1])
    return [(seq, score) for seq, score in ranked if score > NEG_INF]


def greedy(model: PrefixModel, last: int, length: int) -> tuple[list[int], float]:
    codes = torch.zeros(1, dtype=torch.long)
    ids = torch.tensor([last])
    tokens, total = [], 0.0
    for _ in range(length):
        logits, codes = model.step(ids, codes)
        logp = torch.log_softmax(logits[0], -1)
        tok = int(logp.argmax())
        tokens.append(tok)
        total += float(logp[tok])
        ids = torch.tensor([tok])
    return tokens, total


def search(model: PrefixModel, last: int, **kwargs: object) -> list[tuple[list[int], float]]:
    return beam_search(model.step, model.select, torch.zeros(1, dtype=torch.long), last, **kwargs)


def _assert_same(found: list, expected: list, norm: float = 1.0) -> None:
    assert [seq for seq, _ in found] == [seq for seq, _ in expected]
    assert [s for _, s in found] == pytest.approx([s / norm for _, s in expected], abs=1e-9)


# ----------------------------------------------------------------- exactness
@pytest.mark.parametrize("length, alpha", [(4, 0.0), (5, 1.0), (5, 0.6)])
def test_a_wide_beam_is_exhaustive_and_equals_brute_force(length: int, alpha: float) -> None:
    model = PrefixModel()
    exact = brute_force(model, 2, length)
    assert len({s for _, s in exact}) == len(exact)  # no ties: the order is well defined
    width = V ** (length - 1)  # every prefix survives until the last step
    found = search(model, 2, width=width, length=length, length_penalty=alpha)
    assert len(found) == width
    # the top `width` sequences, in order, with score = sum log p / length ** alpha
    _assert_same(found, exact[:width], norm=length**alpha)


@settings(max_examples=25, deadline=None)
@given(
    st.floats(0.1, 3.0),
    st.floats(-3.0, 3.0),
    st.integers(0, V - 1),
    st.integers(1, 4),
    st.floats(0.0, 2.0),
)
def test_beam_search_properties_on_random_models(
    a: float, b: float, last: int, length: int, alpha: float
) -> None:
    model = PrefixModel(a, b)
    exact = brute_force(model, last, length)
    scores = [s for _, s in exact]
    assume(min(x - y for x, y in itertools.pairwise(scores + [-1e9])) > 1e-9)
    norm = length**alpha
    wide = search(model, last, width=V ** (length - 1), length=length, length_penalty=alpha)
    _assert_same(wide, exact[: V ** (length - 1)], norm)
    # width 1 is greedy decoding
    tokens, total = greedy(model, last, length)
    assert search(model, last, width=1, length=length, length_penalty=alpha) == [
        (tokens, pytest.approx(total / norm, abs=1e-9))
    ]
    # any width: results are sorted, distinct, of the right length and scored exactly (the best
    # may lose to greedy: a narrow beam can prune greedy's prefix, hypothesis found such a model)
    for width in (2, 3, 5):
        found = search(model, last, width=width, length=length, length_penalty=alpha)
        assert len(found) == min(width, V**length)
        assert all(len(seq) == length for seq, _ in found)
        assert len({tuple(seq) for seq, _ in found}) == len(found)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
        truth = {tuple(seq): s / norm for seq, s in exact}
        assert all(s == pytest.approx(truth[tuple(seq)], abs=1e-9) for seq, s in found)


def test_the_beam_escapes_the_greedy_trap_by_hand() -> None:
    # Markov model over 3 tokens; the prompt ends with token 2.
    probs = torch.tensor(
        [[1 / 3, 1 / 3, 1 / 3], [0.05, 0.9, 0.05], [0.55, 0.45, 0.0]], dtype=torch.float64
    )

    def step(ids: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.log(probs[ids]), state

    def select(state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]

    state = torch.zeros(1)
    # greedy takes 0 (0.55) and then a flat row: 0.55 / 3 = 0.1833
    ((tokens, score),) = beam_search(step, select, state, 2, width=1, length=2)
    assert tokens == [0, 0] and score == pytest.approx(math.log(0.55 / 3) / 2)
    # width 2 keeps [1] alive and finds 0.45 * 0.9 = 0.405; ties (0.1833) go to the lower id
    found = beam_search(step, select, state, 2, width=2, length=2, length_penalty=0.5)
    assert [seq for seq, _ in found] == [[1, 1], [0, 0]]
    assert [s for _, s in found] == pytest.approx(
        [math.log(0.405) / 2**0.5, math.log(0.55 / 3) / 2**0.5]
    )
    # token 2 is impossible after 2: never proposed, even when the width asks for everything
    found = beam_search(step, select, state, 2, width=9, length=1)
    assert [seq for seq, _ in found] == [[0], [1]]


# ----------------------------------------------------------------- sampling rules in the beam
def _no_repeat_unigram(logits: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, context, True)
    return torch.log_softmax(logits.masked_fill(seen, NEG_INF), dim=-1)


def _ctrl(r: float, window: int) -> Rule:
    def rule(logits: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        for row, ctx in enumerate(context.tolist()):
            for tok in set(ctx[-window:]):
                x = float(out[row, tok])
                out[row, tok] = x / r if x > 0 else x * r
        return torch.log_softmax(out, dim=-1)

    return rule


def _top2_constraint(logits: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)  # not renormalised over the kept two
    second = logits.sort(dim=-1, descending=True).values[:, 1:2]
    return logp.masked_fill(logits < second, NEG_INF)


@pytest.mark.parametrize(
    "cfg, rule, history, length",
    [
        (SamplingConfig(no_repeat_ngram_size=1), _no_repeat_unigram, (3,), 3),
        (SamplingConfig(repetition_penalty=2.5, penalty_window=2), _ctrl(2.5, 2), (3, 1, 2), 4),
        (SamplingConfig(frequency_penalty=0.0, top_k=2), _top2_constraint, (3, 1, 2), 4),
        (SamplingConfig(top_k=2, temperature=0.0), _top2_constraint, (), 4),  # T is ignored
    ],
)
def test_penalties_bans_and_truncation_shape_the_search(
    cfg: SamplingConfig, rule: Rule, history: tuple[int, ...], length: int
) -> None:
    model = PrefixModel()
    exact = brute_force(model, 2, length, rule=rule, history=history)
    width = V ** (length - 1)
    found = search(model, 2, width=width, length=length, cfg=cfg, history=history)
    _assert_same(found, exact[:width], norm=length)
    if cfg.no_repeat_ngram_size:  # 3 is banned and no token repeats: the 3! orders of 0, 1, 2
        assert sorted(seq for seq, _ in found) == [
            list(p) for p in itertools.permutations(range(3))
        ]


def test_the_temperature_does_not_change_the_ranking() -> None:
    model = PrefixModel()
    plain = search(model, 1, width=6, length=4)
    for t in (0.0, 0.3, 2.0):
        assert search(model, 1, width=6, length=4, cfg=SamplingConfig(temperature=t)) == plain


def test_fewer_results_when_fewer_sequences_exist() -> None:
    model = PrefixModel()
    found = search(model, 0, width=10, length=1)
    logp = torch.log_softmax(model.step(torch.tensor([0]), torch.zeros(1, dtype=torch.long))[0], -1)
    order = logp[0].argsort(descending=True).tolist()
    assert [seq for seq, _ in found] == [[i] for i in order]
    assert [s for _, s in found] == pytest.approx([float(logp[0, i]) for i in order])
    only = search(model, 0, width=5, length=3, cfg=SamplingConfig(top_k=1))
    assert only == [(greedy(model, 0, 3)[0], pytest.approx(greedy(model, 0, 3)[1] / 3))]


def test_one_model_step_per_token_with_the_beams_as_the_batch() -> None:
    model = PrefixModel()
    search(model, 0, width=3, length=4)
    assert model.calls == [(1,), (3,), (3,), (3,)]
    assert search(PrefixModel(), 0, width=3, length=0) == [([], 0.0)]


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"width": 0, "length": 3}, "--beams"),
        ({"width": MAX_BEAMS + 1, "length": 3}, "--beams"),
        ({"width": 2.5, "length": 3}, "--beams"),
        ({"width": 2, "length": -1}, "--length"),
        ({"width": 2, "length": 3, "length_penalty": float("nan")}, "--length-penalty"),
        ({"width": 2, "length": 3, "cfg": SamplingConfig(top_p=2.0)}, "--top-p"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict, flag: str) -> None:
    with pytest.raises(SamplingError, match=flag):
        search(PrefixModel(), 0, **kwargs)


def test_works_with_a_real_recurrent_model() -> None:
    from chargen.config import ModelConfig
    from chargen.models import build_model, select_state

    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=V, embed_dim=4, hidden_size=8)).eval()

    def step(ids: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        logits, state = model(ids[:, None], state)
        return logits[:, -1], state

    prompt = [1, 2, 3]
    with torch.no_grad():
        _, state = model(torch.tensor([prompt[:-1]]), None)
    found = beam_search(step, select_state, state, prompt[-1], width=V**2, length=3)
    # exhaustive: compare with scoring every continuation by re-reading the whole text
    truth = {}
    for seq in itertools.product(range(V), repeat=3):
        with torch.no_grad():
            logits, _ = model(torch.tensor([prompt + list(seq)]))
        logp = torch.log_softmax(logits[0, len(prompt) - 1 : -1].double(), -1)
        truth[seq] = float(logp.gather(1, torch.tensor(seq)[:, None]).sum()) / 3
    best = sorted(truth.items(), key=lambda kv: -kv[1])[: V**2]
    assert [tuple(seq) for seq, _ in found] == [seq for seq, _ in best]
    assert [s for _, s in found] == pytest.approx([s for _, s in best], abs=1e-5)


def brute_force_ended(
    model: PrefixModel, last: int, length: int, end: int, alpha: float
) -> list[tuple[list[int], float]]:
    """Every distinct hypothesis when ``end`` finishes a sequence: each sequence of ``length``
    tokens cut after its first ``end``, scored ``sum log p / its length ** alpha``, best first."""
    seqs = torch.tensor(list(itertools.product(range(V), repeat=length)), dtype=torch.long)
    n = seqs.shape[0]
    codes = torch.zeros(n, dtype=torch.long)
    ids = torch.full((n,), last, dtype=torch.long)
    sums = torch.zeros((n, length), dtype=torch.float64)  # log p of the first t + 1 tokens
    total = torch.zeros(n, dtype=torch.float64)
    for t in range(length):
        logits, codes = model.step(ids, codes)
        total += torch.log_softmax(logits, -1).gather(1, seqs[:, t : t + 1])[:, 0]
        sums[:, t] = total
        ids = seqs[:, t]
    found: dict[tuple[int, ...], float] = {}
    for seq, row in zip(seqs.tolist(), sums.tolist(), strict=True):
        cut = seq.index(end) + 1 if end in seq else length
        found[tuple(seq[:cut])] = row[cut - 1] / cut**alpha
    return sorted(([list(k), v] for k, v in found.items()), key=lambda r: -r[1])  # type: ignore[misc]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_an_end_token_finishes_a_beam_and_a_wide_beam_equals_brute_force(alpha: float) -> None:
    """A ``--lines`` run's boundary: a beam that draws it is finished there (shorter, its
    score normalised by its own length), and the search goes on from the others."""
    model, length, end = PrefixModel(), 4, 1
    exact = brute_force_ended(model, 2, length, end, alpha)
    assert len({round(s, 12) for _, s in exact}) == len(exact)  # no ties
    width = V ** (length - 1)
    found = search(model, 2, width=width, length=length, length_penalty=alpha, end_token=end)
    assert [seq for seq, _ in found] == [seq for seq, _ in exact[:width]]
    assert [s for _, s in found] == pytest.approx([s for _, s in exact[:width]], abs=1e-9)
    assert any(len(seq) < length and seq[-1] == end for seq, _ in found)
    assert all(end not in seq[:-1] for seq, _ in found)  # nothing goes on past the end
