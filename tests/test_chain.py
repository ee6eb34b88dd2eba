"""The sampling chain: built once per request, and it answers for its rules."""

from __future__ import annotations

import pytest
import torch

from chargen import chain as chain_module
from chargen import sampling
from chargen.chain import SamplingChain
from chargen.checkpoint import load_run
from chargen.generate import generate
from chargen.rng import uniforms
from chargen.sampling import PENALTY, TRUNCATION, SamplingConfig


@pytest.mark.parametrize(
    ("cfg", "reads_history", "numpy_ok"),
    [
        (SamplingConfig(), False, True),
        (SamplingConfig(temperature=0.5), False, True),
        (SamplingConfig(temperature=0), False, True),
        (SamplingConfig(top_k=5), False, True),
        (SamplingConfig(top_p=0.9, min_p=0.1), False, True),
        (SamplingConfig(repetition_penalty=1.3), True, True),
        (SamplingConfig(frequency_penalty=0.2), True, True),
        (SamplingConfig(presence_penalty=0.2), True, True),
        (SamplingConfig(no_repeat_ngram_size=3, temperature=0), True, True),
    ],
)
def test_the_chain_answers_from_what_its_rules_declare(
    cfg: SamplingConfig, reads_history: bool, numpy_ok: bool
) -> None:
    chain = SamplingChain(cfg)
    assert chain.reads_history is reads_history and chain.numpy_ok is numpy_ok
    assert all(rule.stage == PENALTY for rule in chain.penalties)
    assert all(rule.stage == TRUNCATION for rule in chain.truncations)
    stages = [rule.stage for rule in chain.rules]
    assert stages == sorted(stages)  # the documented order


def test_rows_share_a_pass_only_without_history() -> None:
    a, b = SamplingChain(SamplingConfig(top_k=5)), SamplingChain(SamplingConfig(top_k=5))
    assert a.key == b.key != SamplingChain(SamplingConfig(top_k=6)).key
    p, q = (SamplingChain(SamplingConfig(repetition_penalty=1.2)) for _ in range(2))
    assert p.key != q.key


def test_the_chain_equals_the_plain_functions() -> None:
    """The oracle: sampling.process_logits and sampling.draw, which build the rules each call."""
    torch.manual_seed(0)
    logits = torch.randn(4, 30)
    history = torch.randint(0, 30, (4, 12))
    for cfg in (
        SamplingConfig(temperature=0.7, top_p=0.9, repetition_penalty=1.3),
        SamplingConfig(temperature=0, no_repeat_ngram_size=2),
        SamplingConfig(min_p=0.05, typical_p=0.8, frequency_penalty=0.5),
    ):
        chain = SamplingChain(cfg)
        assert torch.equal(
            chain.logprobs(logits, history), sampling.process_logits(logits, history, cfg)
        )
        u = uniforms([1, 2, 3, 4], 5)
        for got, want in zip(
            chain.draw(logits, history, u), sampling.draw(logits, history, u, cfg), strict=True
        ):
            assert torch.equal(got, want)


def test_rules_are_built_once_per_generation(trained_run, monkeypatch: pytest.MonkeyPatch) -> None:
    _, tokenizer, model = load_run(trained_run)
    calls = {"n": 0}
    real = chain_module.build_processors

    def counting(cfg: SamplingConfig):
        calls["n"] += 1
        return real(cfg)

    monkeypatch.setattr(chain_module, "build_processors", counting)
    monkeypatch.setattr(sampling, "build_processors", counting)
    for engine in ("torch", "numpy"):
        calls["n"] = 0
        generate(
            model, tokenizer, "the ", length=50, engine=engine,
            sampling=SamplingConfig(top_k=5, repetition_penalty=1.2), num_samples=3,
        )  # fmt: skip
        assert calls["n"] == 1, engine


# ------------------------------------------------------------------ the sampler X-ray
@pytest.mark.parametrize(
    "cfg",
    [
        SamplingConfig(temperature=0.7, top_k=5, repetition_penalty=1.5),
        SamplingConfig(temperature=1.3, top_p=0.8, min_p=0.02, presence_penalty=0.4),
        SamplingConfig(temperature=0, no_repeat_ngram_size=2),
    ],
)
def test_the_xray_ends_with_the_distribution_draw_samples_from(cfg: SamplingConfig) -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 40)
    history = torch.randint(0, 40, (1, 15))
    chain = SamplingChain(cfg)
    stages = chain.xray(logits, history)
    assert stages[0][0] == "model"
    assert torch.allclose(stages[0][1], torch.log_softmax(logits, -1))
    assert torch.equal(stages[-1][1], sampling.process_logits(logits, history, cfg))
    assert len(stages) == 1 + len(chain.rules) + (1 if cfg.greedy else 0)


def test_xray_labels_name_each_rule_and_its_settings() -> None:
    chain = SamplingChain(SamplingConfig(temperature=0.7, top_k=5, repetition_penalty=1.5))
    labels = [label for label, _ in chain.xray(torch.zeros(1, 5), torch.zeros(1, 0).long())]
    assert labels == ["model", "repetition penalty 1.5, window=64", "temperature 0.7", "top k 5"]


def test_inspect_shows_the_xray_as_a_table_and_json(trained_run) -> None:
    import json

    from tests.conftest import run_chargen

    args = [
        "inspect",
        str(trained_run),
        "--prompt",
        "the c",
        "--top-k",
        "3",
        "--temperature",
        "0.5",
    ]
    table = run_chargen(*args)
    assert table.returncode == 0, table.stderr
    assert "temperature 0.5" in table.stdout and "top k 3" in table.stdout
    data = json.loads(run_chargen(*args, "--format", "json").stdout)
    assert data["columns"] == ["model", "temperature 0.5", "top k 3"]
    assert sum(1 for row in data["probs"] if row[-1] > 0) <= 3  # top-k left three tokens
    two = run_chargen("inspect", str(trained_run), "--top-k", "3", "--temperature", "0.5", "1")
    assert two.returncode == 2 and "one --temperature" in two.stderr
