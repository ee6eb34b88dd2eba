"""Beam search against brute force, the temperature table, and surprisal scoring."""

from __future__ import annotations

import io
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

from chargen.beam import beam_search
from chargen.cli import main
from chargen.config import ModelConfig
from chargen.errors import ConfigError, SamplingError
from chargen.inspect_next import (
    DEFAULT_TEMPERATURES,
    inspect_plan,
    next_distribution,
    next_token_table,
    stage_summary,
)
from chargen.models import build_model
from chargen.sampling import SamplingConfig
from chargen.score import score_text, surprisal_html
from chargen.tokenizer import build_tokenizer

V = 4
torch.manual_seed(3)
TRANSITIONS = torch.log_softmax(torch.randn(V, V) * 2.0, dim=-1)  # log p(next | last)


def _step(last: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return TRANSITIONS[last], state


def _select(state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return state[rows]


def _brute_force(start: int, length: int) -> list[tuple[list[int], float]]:
    results = []
    for seq in itertools.product(range(V), repeat=length):
        prev, total = start, 0.0
        for tok in seq:
            total += float(TRANSITIONS[prev, tok])
            prev = tok
        results.append((list(seq), total))
    return sorted(results, key=lambda r: -r[1])


@pytest.mark.parametrize("length", [3, 5])
def test_wide_beam_finds_the_brute_force_best(length: int) -> None:
    exact = _brute_force(1, length)
    found = beam_search(
        _step,
        _select,
        torch.zeros(1),
        1,
        width=V ** (length - 1),
        length=length,
        length_penalty=0.0,
    )
    # a Markov chain can tie (the same transitions in another order): compare scores
    assert found[0][1] == pytest.approx(exact[0][1])
    assert found[0][0] in [seq for seq, score in exact if score == pytest.approx(exact[0][1])]
    # the top few agree too (scores sorted, best first)
    assert [f[1] for f in found[:5]] == pytest.approx([e[1] for e in exact[:5]])


def test_width_one_is_greedy_and_length_penalty_scales() -> None:
    ((tokens, score),) = beam_search(
        _step, _select, torch.zeros(1), 0, width=1, length=4, length_penalty=1.0
    )
    prev, total = 0, 0.0
    for tok in tokens:
        assert tok == int(TRANSITIONS[prev].argmax())
        total += float(TRANSITIONS[prev, tok])
        prev = tok
    assert score == pytest.approx(total / 4)


def test_beam_width_validated() -> None:
    with pytest.raises(SamplingError, match="--beams"):
        beam_search(_step, _select, torch.zeros(1), 0, width=0, length=3)


def test_next_token_table_matches_softmax_with_temperature() -> None:
    tok = build_tokenizer("char", "abcdefgh ")
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, embed_dim=4, hidden_size=16)).eval()
    table = next_token_table(model, tok, "abc", [0.5, 1.0, 0.0], top=tok.vocab_size)
    with torch.no_grad():
        logits, _ = model(torch.tensor([tok.encode("abc").tolist()]))
    for t_index, t in enumerate([0.5, 1.0]):
        expected = torch.softmax(logits[0, -1] / t, -1)
        for row, token in enumerate(table.tokens):
            assert table.probs[row][t_index] == pytest.approx(
                float(expected[tok.stoi[token]]), rel=1e-5
            )
        h = float(-(expected * expected.log()).sum())
        assert table.entropies[t_index] == pytest.approx(h, rel=1e-5)
    assert [row[2] for row in table.probs] == [1.0] + [0.0] * (len(table.tokens) - 1)
    assert table.entropies[2] == 0.0
    assert "T=0.5" in table.render()


def test_stage_summary_keeps_the_likeliest_tokens_of_p_above_zero() -> None:
    logprobs = torch.tensor([0.25, 0.5, 0.25, 0.0]).log()  # token 3 ruled out
    stage = stage_summary("top-k", logprobs, top=3)
    assert stage.label == "top-k" and stage.ids == [1, 0, 2]  # a tie goes to the lower id
    assert stage.logprobs == pytest.approx([math.log(0.5), math.log(0.25), math.log(0.25)])
    assert stage.kept == 3 and stage.entropy_bits == pytest.approx(1.5)  # -sum p log2 p
    assert stage_summary("top-k", logprobs, top=10).ids == [1, 0, 2]  # never a p = 0 token
    assert stage_summary("x", torch.tensor([0.0, 0.0]).log(), top=2).entropy_bits is None
    one_hot = stage_summary("greedy", torch.tensor([0.0, 1.0, 0.0]).log(), top=2)
    assert (one_hot.ids, one_hot.kept, one_hot.entropy_bits) == ([1], 1, 0.0)


def test_distribution_top_is_the_models_likeliest_at_t1() -> None:
    tok = build_tokenizer("char", "abcdefgh ")
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, embed_dim=4, hidden_size=16)).eval()
    found = next_distribution(model, tok, "abc", SamplingConfig(temperature=0.5, top_k=2))
    with torch.no_grad():
        logits, _ = model(torch.tensor([tok.encode("abc").tolist()]))
    expected = torch.log_softmax(logits[0, -1], -1)
    ids, values = found.top(3)
    assert ids == torch.argsort(expected, descending=True)[:3].tolist()
    assert values == pytest.approx(expected[ids].tolist(), abs=1e-5)
    assert found.top(100)[0] == torch.argsort(expected, descending=True).tolist()
    last = found.summaries(10)[-1]
    assert last.kept == 2 and last.ids == ids[:2]  # top-k 2 keeps the two likeliest


def test_inspect_plan_chooses_the_xray_or_the_temperature_table() -> None:
    plain = inspect_plan({}, None)
    assert not plain.xray and plain.temperatures == list(DEFAULT_TEMPERATURES)
    assert [c.temperature for c in plain.configs] == [0.2, 0.5, 1.0, 1.2]
    held = inspect_plan({"clamp": ("0:h:1=1",), "temperature": 0.7}, [0.5, 1.0])
    assert not held.xray and held.temperatures == [0.5, 1.0]
    assert all(c.clamp == ("0:h:1=1",) for c in held.configs)
    xray = inspect_plan({"top_k": 5}, None)
    assert xray.xray and xray.temperatures == [1.0] and xray.configs[0].top_k == 5
    with pytest.raises(ConfigError, match="one --temperature"):
        inspect_plan({"top_k": 5}, [0.5, 1.0])


def test_score_equals_eval_loss_and_html_is_self_contained() -> None:
    tok = build_tokenizer("char", "abcdefgh <>&/\n")
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, embed_dim=4, hidden_size=16)).eval()
    text = "abc <b>&</b>\nhgf" * 40
    scored = score_text(model, tok, text)
    ids = [tok.stoi["\n"], *tok.encode(text).tolist()]
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    nats = torch.nn.functional.cross_entropy(logits[0], torch.tensor(ids[1:]), reduction="sum")
    assert scored.bits_per_char == pytest.approx(float(nats) / math.log(2) / len(text), rel=1e-5)
    page = surprisal_html(scored, "test")
    assert "&lt;" in page and "&amp;" in page and "<b>" not in page and "http" not in page
    assert page.count("<span") == len(text)


def test_cli_inspect_score_and_beams(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["inspect", str(trained_run), "--prompt", "the ", "--plot", str(tmp_path / "t.png")])
        == 0
    )
    out = capsys.readouterr().out
    assert "T=0.2" in out and "entropy" in out
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    text = tmp_path / "t.txt"
    text.write_text("the cat sees the moon.\n", encoding="utf-8")
    assert main(["score", str(trained_run), str(text), "--html", str(tmp_path / "s.html")]) == 0
    assert "bits/char" in capsys.readouterr().out
    assert "<span" in (tmp_path / "s.html").read_text(encoding="utf-8")
    assert (
        main(
            [
                "generate",
                str(trained_run),
                "--prompt",
                "the ",
                "--beams",
                "4",
                "--length",
                "12",
                "--num-samples",
                "2",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("------ beam") == 2


def test_score_reads_standard_input_as_it_reads_a_file(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = "\ufeffthe cat sees\r\nthe moon.\r\n".encode()
    (tmp_path / "t.txt").write_bytes(raw)
    capsys.readouterr()
    assert main(["score", str(trained_run), str(tmp_path / "t.txt")]) == 0
    from_file = capsys.readouterr().out.split(": ", 1)[1]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    assert main(["score", str(trained_run), "-"]) == 0
    assert capsys.readouterr().out == f"stdin: {from_file}"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff"), encoding="utf-8"))
    assert main(["score", str(trained_run), "-"]) == 2
    assert "stdin: byte 0xff at offset 0" in capsys.readouterr().err
