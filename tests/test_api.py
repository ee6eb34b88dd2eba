"""The Python API (chargen.api): ``train`` (new runs, resume, options), ``resume``, ``load``,
``Run.generate`` / ``Run.samples``, and what each command offers: ``Run.beams``, ``evaluate``,
``score`` and ``inspect`` give what ``generate --beams``, ``eval``, ``score`` and ``inspect``
print for the same arguments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import chargen
from chargen import checkpoint as ckpt
from chargen.cli import main
from chargen.errors import CheckpointError, ConfigError, TokenizerError
from tests.conftest import TINY, make_text


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-step run of preset medium: best.safetensors (step 40) and model.safetensors."""
    folder = tmp_path_factory.mktemp("api")
    corpus = folder / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    chargen.train(str(corpus), folder / "run", steps=40, preset="medium", **TINY)
    return folder / "run"


# ------------------------------------------------------------------------------- train
def test_train_returns_what_it_did(corpus_file: Path, tmp_path: Path) -> None:
    result = chargen.train(str(corpus_file), tmp_path / "run", steps=12, preset="medium", **TINY)
    assert result.run_dir == tmp_path / "run" and result.step == 12
    assert ckpt.load_trainer_state(tmp_path / "run").meta["step"] == 12
    evals = [r for r in ckpt.MetricsLog(tmp_path / "run").read() if r["kind"] == "eval"]
    assert result.val is not None and evals[-1]["step"] == 12
    assert result.val.nats_per_char == evals[-1]["val_nats_per_char"]
    assert result.best_val_nats_per_char == min(r["val_nats_per_char"] for r in evals)
    config = ckpt.load_config(tmp_path / "run")  # the options and the budget are the run's
    assert config.model.hidden_size == TINY["hidden_size"] and config.train.steps == 12
    assert config.train.lr == TINY["lr"] and config.data.source == str(corpus_file)


def test_existing_run_is_not_overwritten(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=5, preset="medium", **TINY)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        chargen.train(str(corpus_file), run, steps=5, preset="medium", **TINY)
    assert (run / "model.safetensors").read_bytes() == before
    chargen.train(
        str(corpus_file), run, steps=5, overwrite=True, preset="medium", **{**TINY, "seed": 7}
    )
    assert (run / "model.safetensors").read_bytes() != before


def test_resume_with_a_larger_budget_continues(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=10, preset="medium", **TINY)
    result = chargen.train(str(corpus_file), run, steps=20, resume=True)
    assert result.step == 20
    assert ckpt.load_config(run).train.steps == 20  # the new budget is the run's now


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"steps": 5, "minutes": 1.0}, "at most one of steps, epochs, minutes"),
        ({"steps": 5, "epochs": 1.0}, "at most one of steps, epochs, minutes"),
        ({"steps": 5, "hidden": 32}, "unknown training option 'hidden'"),
        ({"steps": 5, "vocab_size": 9}, "unknown training option 'vocab_size'"),
        ({"steps": 5, "preset": "huge"}, "unknown preset 'huge'"),
        ({"steps": 5, "lr": -1.0}, "--lr"),
    ],
)
def test_train_refuses_bad_arguments_before_touching_the_folder(
    corpus_file: Path, tmp_path: Path, kwargs: dict, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        chargen.train(str(corpus_file), tmp_path / "run", **kwargs)
    assert needle in str(info.value)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_new_options(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=4, preset="medium", **TINY)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(ConfigError, match="cannot change hidden_size, lr when resuming"):
        chargen.train(str(corpus_file), run, steps=8, resume=True, lr=0.1, hidden_size=8)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# -------------------------------------------------------------------------------- load
def test_load_best_and_last(run: Path, tmp_path: Path) -> None:
    for which, name in (("best", ckpt.BEST), ("last", ckpt.WEIGHTS)):
        loaded = chargen.load(run, which)
        saved = load_file(run / name)
        state = loaded.model.state_dict()
        assert saved and all(np.array_equal(state[k].numpy(), v) for k, v in saved.items())
        assert not loaded.model.training
        assert loaded.config == ckpt.load_config(run) and loaded.path == run
        assert loaded.tokenizer.vocab_size == loaded.config.model.vocab_size
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / ckpt.BEST).unlink()  # no evaluation yet: best falls back to the last weights
    fallback = chargen.load(copy, "best").model.state_dict()
    last = load_file(run / ckpt.WEIGHTS)
    assert all(np.array_equal(fallback[k].numpy(), v) for k, v in last.items())
    with pytest.raises(CheckpointError, match="no such run folder"):
        chargen.load(tmp_path / "nothing")


# ---------------------------------------------------------------------------- generate
@torch.no_grad()
def _greedy(loaded: chargen.Run, prompt: str, length: int) -> str:
    """The most likely next token, one at a time, each step reading the whole text so far
    from a zero state (no carried state, no sampling code)."""
    ids = [int(i) for i in loaded.tokenizer.encode(prompt)]
    out: list[int] = []
    for _ in range(length):
        logits, _ = loaded.model(torch.tensor([ids + out]), None)
        out.append(int(logits[0, -1].argmax()))
    return loaded.tokenizer.decode(np.array(out, dtype=np.int64))


def test_generate_at_temperature_0_is_the_greedy_continuation(run: Path) -> None:
    loaded = chargen.load(run)
    for prompt in ("the ", "a dog sees"):
        text = loaded.generate(prompt, length=30, temperature=0.0)
        assert text == _greedy(loaded, prompt, 30)  # the prompt is not included


def test_generate_is_reproducible_by_seed(run: Path) -> None:
    loaded = chargen.load(run)
    a = loaded.generate("the ", 60, 1.0)
    assert len(a) == 60 and a == loaded.generate("the ", 60, 1.0)  # seed 0 by default
    draws = {loaded.generate("the ", 60, 1.0, seed=s) for s in range(4)}
    assert len(draws) > 1
    rows = loaded.samples("the ", 40, 1.0, num_samples=3, seed=5)
    assert [r.seed for r in rows] == [5, 6, 7]
    assert [r.text for r in rows] == [loaded.generate("the ", 40, 1.0, seed=s) for s in (5, 6, 7)]
    for row in rows:  # per token: log p <= 0 and an entropy >= 0
        assert len(row.tokens) == len(row.logprobs) == len(row.entropies) == 40
        assert all(lp <= 0 for lp in row.logprobs) and all(h >= 0 for h in row.entropies)


def test_generate_takes_the_prompt_literally_and_passes_sampling_options(run: Path) -> None:
    loaded = chargen.load(run)
    assert "\\" not in loaded.tokenizer.vocab and "\n" in loaded.tokenizer.vocab
    # a backslash and an n, not a newline: the backslash is a symbol the text never had
    with pytest.raises(TokenizerError, match=r"not in the vocabulary: '\\\\'"):
        loaded.samples("the\\n", 5, 0.0, unknown="error")
    assert loaded.generate("the\n", 5, 0.0) == _greedy(loaded, "the\n", 5)
    banned = loaded.generate("the ", 80, 1.0, ban_chars="eE")
    assert len(banned) == 80 and "e" not in banned and "E" not in banned
    stopped = loaded.samples("the ", 200, 1.0, stop=(".",))[0]
    assert stopped.stop_reason == "stop" and "." not in stopped.text


# ------------------------------------------------------------- what the command line does
def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list:
    """Each JSON line ``chargen ARGV`` prints, the command run in this process."""
    capsys.readouterr()
    assert main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_resume_continues_with_runtime_settings_and_refuses_the_rest(
    corpus_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    chargen.train(str(corpus_file), run, steps=6, preset="medium", **TINY)
    result = chargen.resume(run, steps=9, threads=2, device="cpu")  # as --threads, --device
    assert result.step == 9 and ckpt.load_config(run).train.threads == 1  # not saved: TINY's
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(ConfigError, match="cannot change lr when resuming"):
        chargen.resume(run, steps=12, lr=0.5)
    with pytest.raises(ConfigError, match="was trained on"):
        chargen.train(str(tmp_path / "other.txt"), run, steps=12, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_evaluate_is_what_eval_prints(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = chargen.load(run)
    for flags, part in (([], "validation"), (["--all"], "all")):
        (printed,) = _cli_json(capsys, "eval", str(run), "--json", *flags)
        found = loaded.evaluate(all=part == "all")
        assert found.to_dict() == printed and found.part == part
    # the last evaluation training recorded is the same loss, on the last weights
    last = [r for r in ckpt.MetricsLog(run).read() if r["kind"] == "eval"][-1]
    again = chargen.load(run, "last").evaluate().result
    assert again.nats_per_char == pytest.approx(last["val_nats_per_char"], rel=1e-5)


def test_score_is_what_score_prints(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = make_text(900, seed=3)
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert main(["score", str(run), str(tmp_path / "t.txt")]) == 0
    printed = capsys.readouterr().out
    scored = chargen.load(run).score(text)
    assert f"{scored.bits_per_char:.4f} bits/char over {scored.chars:,} chars" in printed
    assert "".join(scored.pieces) == text and len(scored.bits) == len(scored.pieces)


def test_beams_are_what_generate_beams_prints(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = _cli_json(
        capsys, "generate", str(run), "--prompt", "the ", "--beams", "3", "--length", "12",
        "--num-samples", "3", "--format", "jsonl",
    )  # fmt: skip
    found = chargen.load(run).beams("the ", length=12, width=3)
    assert [(p["text"], p["score"]) for p in printed] == [(s.text, s.logprobs[0]) for s in found]
    scores = [s.logprobs[0] for s in found]
    assert scores == sorted(scores, reverse=True) and len(set(s.text for s in found)) == 3


def test_inspect_is_what_inspect_prints(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = chargen.load(run)
    (table,) = _cli_json(capsys, "inspect", str(run), "--prompt", "th", "--format", "json")
    assert loaded.inspect("th").to_dict() == table
    assert table["columns"] == ["T=0.2", "T=0.5", "T=1", "T=1.2"]
    (xray,) = _cli_json(
        capsys, "inspect", str(run), "--prompt", "th", "--top-k", "3", "--format", "json"
    )
    assert loaded.inspect("th", top_k=3).to_dict() == xray and len(xray["columns"]) > 1
    with pytest.raises(ConfigError, match="takes one --temperature"):
        loaded.inspect("th", (0.5, 1.0), top_k=3)


def test_items_are_what_generate_prints_for_a_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run: Path
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("".join(f"{w}{i % 17}\n" for i, w in enumerate(["ana", "bo", "cy"] * 60)))
    chargen.train(str(names), tmp_path / "list", steps=20, preset="medium", lines=True, **TINY)
    printed = _cli_json(
        capsys, "generate", str(tmp_path / "list"), "--seed", "3", "--num-samples", "5",
        "--temperature", "0.8", "--novelty", "--format", "jsonl",
    )  # fmt: skip
    found = chargen.load(tmp_path / "list").items(5, temperature=0.8, seed=3, novelty=True)
    assert [item.to_dict(0.8) for item in found] == printed
    assert all(item.label in ("train", "val", "new") for item in found)
    with pytest.raises(ConfigError, match="not trained with --lines"):
        chargen.load(run).items(2)
