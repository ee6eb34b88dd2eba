"""Fuzzing the command line: any argument list ends with exit 0 or 2 and never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargen.cli import main
from tests.conftest import make_text

VALUES = [
    "-1",
    "0",
    "1",
    "2",
    "0.5",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "abc",
    "",
    "☃",
    "1e3",
    "7",
    "0.0001",
]
GENERATE_FLAGS = [
    "--prompt",
    "--length",
    "--temperature",
    "--num-samples",
    "--seed",
    "--stop",
    "--unknown",
    "--format",
    "--top-k",
    "--top-p",
    "--min-p",
    "--typical-p",
    "--repetition-penalty",
    "--frequency-penalty",
    "--presence-penalty",
    "--penalty-window",
    "--no-repeat-ngram-size",
    "--beams",
    "--length-penalty",
    "--weights",
]
TRAIN_FLAGS = [
    "--hidden-size",
    "--embed-dim",
    "--layers",
    "--dropout",
    "--batch-size",
    "--seq-len",
    "--lr",
    "--grad-clip",
    "--batching",
    "--maxlen",
    "--window-step",
    "--optimizer",
    "--schedule",
    "--tokenizer",
    "--max-vocab",
    "--lowercase",
    "--errors",
    "--encoding",
    "--model",
    "--weight-decay",
    "--warmup-steps",
]
SMALL = ["1", "2", "3", "4", "8"]


def _pairs(flags: list[str]) -> st.SearchStrategy[list[str]]:
    pair = st.tuples(st.sampled_from(flags), st.sampled_from(VALUES + SMALL)).map(list)
    return st.lists(pair, max_size=5).map(lambda ps: [x for p in ps for x in p])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(["generate", "inspect", "eval"]),
    args=_pairs(GENERATE_FLAGS),
)
def test_generate_inspect_eval_args(
    trained_run: Path, capsys: pytest.CaptureFixture[str], command: str, args: list[str]
) -> None:
    if command != "generate":
        args = [a for a in args if a not in GENERATE_FLAGS] if command == "eval" else args
    # keep the work bounded: lengths and samples above the small values are clamped by the last flag
    code = main(
        [
            command,
            str(trained_run),
            *args,
            *(["--length", "20", "--num-samples", "2"] if command == "generate" else []),
        ]
    )
    out = capsys.readouterr()
    assert code in (0, 2), out.err
    assert "Traceback" not in out.err
    if code == 2:
        assert (
            len([line for line in out.err.splitlines() if line.startswith("chargen: error:")]) == 1
        )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=_pairs(TRAIN_FLAGS))
def test_train_args(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "c.txt"
        corpus.write_text(make_text(3000), encoding="utf-8")
        code = main(
            [
                "train",
                str(corpus),
                "--out",
                f"{tmp}/run",
                *args,
                "--steps",
                "2",
                "--sample-length",
                "4",
                "--threads",
                "1",
                "--eval-every",
                "2",
            ]
        )
        out = capsys.readouterr()
        assert code in (0, 2), out.err
        assert "Traceback" not in out.err
        if code == 2:
            assert not (Path(tmp) / "run").exists()
