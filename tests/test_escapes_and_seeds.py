r"""Escapes in --prompt / --stop, fresh seeds printed for reproduction, score's decoding flags,
and eval naming the part it scored."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chargen
from chargen.cli import main
from chargen.escapes import EscapeError, decode_escapes, encode_escapes
from tests.conftest import make_text

SEED_LINE = re.compile(r"^seed: (\d+) \(reproduce with --seed (\d+)\)$", re.M)

# valid Unicode text (no lone surrogates, which no escape decodes to)
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
# text dense in backslashes and the letters that follow them
TRICKY = st.text(
    st.sampled_from(["\\", "n", "t", "r", "x", "u", "U", "0", "d", "8", "F", "\n", "\t", "é", "😀"])
)


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("chargen: error:"), err
    return lines[0]


# --------------------------------------------------------------------------- escapes
@given(TEXT)
def test_escapes_round_trip(text: str) -> None:
    encoded = encode_escapes(text)
    assert decode_escapes(encoded) == text
    assert encoded.isprintable()  # one line a user can read and paste


@given(TRICKY)
def test_escapes_round_trip_on_backslash_heavy_text(text: str) -> None:
    assert decode_escapes(encode_escapes(text)) == text


@given(st.text(st.characters(exclude_characters="\\")))
def test_text_without_a_backslash_is_unchanged(text: str) -> None:
    assert decode_escapes(text) == text


@given(TRICKY)
def test_any_text_decodes_or_raises_one_escape_error(text: str) -> None:
    try:
        decode_escapes(text, "--prompt")
    except EscapeError as exc:
        assert str(exc).startswith("--prompt: ") and "\n" not in str(exc)
        assert text[exc.position - 1] == "\\"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (r"\n\n", "\n\n"),
        (r"a\tb\r\n", "a\tb\r\n"),
        (r"C:\\temp", "C:\\temp"),
        (r"\\n", "\\n"),
        (r"\x41\u00e9\U0001F600", "Aé😀"),
        (r"\ud83d\ude00", "😀"),  # a UTF-16 surrogate pair, as JSON writes it
        ("plain ☃", "plain ☃"),
    ],
)
def test_escapes_read(raw: str, decoded: str) -> None:
    assert decode_escapes(raw) == decoded


@pytest.mark.parametrize(
    ("raw", "position", "why"),
    [
        (r"ab\q", 3, r"unknown escape \q"),
        (r"\u12", 1, "needs 4 hex digits"),
        (r"x\u12zz", 2, "needs 4 hex digits"),
        (r"\xg0", 1, "needs 2 hex digits"),
        ("end\\", 4, "a lone backslash"),
        (r"\ud83d", 1, "lone surrogate"),
        (r"\U00110000", 1, "past U+10FFFF"),
    ],
)
def test_bad_escapes_name_their_position(raw: str, position: int, why: str) -> None:
    with pytest.raises(EscapeError) as info:
        decode_escapes(raw, "--stop")
    assert info.value.position == position
    assert why in str(info.value) and f"at character {position} " in str(info.value)
    assert str(info.value).startswith("--stop: ") and "--no-escapes" in str(info.value)


# --------------------------------------------------------------------------- generate / inspect
def test_stop_and_prompt_escapes_on_the_command_line(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = chargen.load(trained_run)
    # the README's example: --stop "\n\n" is two newlines
    code, out, err = run_cli(
        capsys, "generate", trained_run, "--prompt", "the ", "--num-samples", "4",
        "--seed", "7", "--length", "120", "--stop", r"\n\n",
    )  # fmt: skip
    expected = run.samples("the ", 120, num_samples=4, seed=7, stop=("\n\n",))
    assert code == 0 and "seed:" not in err
    assert all(f"seed {7 + i}\nthe {s.text}\n" in out for i, s in enumerate(expected))
    # a stop the tiny model reaches: every sentence of its corpus ends with a newline
    code, out, _ = run_cli(
        capsys, "generate", trained_run, "--prompt", r"a dog sees the moon.\nthe ",
        "--seed", "3", "--length", "200", "--stop", r"\n",
    )  # fmt: skip
    (cut,) = run.samples("a dog sees the moon.\nthe ", 200, seed=3, stop=("\n",))
    assert cut.stop == "\n" and out == f"a dog sees the moon.\nthe {cut.text}\n"
    # --no-escapes: both are taken literally, so the stop never matches
    code, out, _ = run_cli(
        capsys, "generate", trained_run, "--prompt", "the ", "--seed", "3", "--length", "200",
        "--stop", r"\n", "--no-escapes",
    )  # fmt: skip
    (free,) = run.samples("the ", 200, seed=3)
    assert code == 0 and out == f"the {free.text}\n" and "\n" in free.text


def test_bad_escape_is_one_line_exit_2(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "generate", trained_run, "--prompt", r"the \cat")
    line = one_line_error(code, err)
    assert "--prompt" in line and "at character 5" in line and "--no-escapes" in line
    code, _, err = run_cli(capsys, "generate", trained_run, "--stop", "a", r"\u12")
    assert "--stop" in one_line_error(code, err)
    code, _, err = run_cli(capsys, "inspect", trained_run, "--prompt", "x\\")
    assert "lone backslash" in one_line_error(code, err)
    # without --seed, a refused prompt is still one line: no seed line before the error
    code, _, err = run_cli(
        capsys, "generate", trained_run, "--prompt", "☃the", "--unknown", "error"
    )
    assert "☃" in one_line_error(code, err)
    # literally: the backslash is an unknown symbol (a warning), not an error
    code, out, _ = run_cli(
        capsys, "generate", trained_run, "--prompt", r"the \cat", "--length", "5", "--seed",
        "1", "--no-escapes",
    )  # fmt: skip
    assert code == 0 and out.startswith("the \\cat")


def test_inspect_reads_escapes(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, escaped, _ = run_cli(capsys, "inspect", trained_run, "--prompt", r"the moon.\n")
    code2, literal, _ = run_cli(
        capsys, "inspect", trained_run, "--prompt", "the moon.\n", "--no-escapes"
    )
    assert code == code2 == 0 and escaped == literal


def test_beams_read_escapes(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "generate", trained_run, "--prompt", r"the moon.\n", "--beams", "2",
        "--length", "10",
    )  # fmt: skip
    assert code == 0 and out.startswith("the moon.\n") and "seed:" not in err


# --------------------------------------------------------------------------- fresh seeds
def test_missing_seed_is_fresh_and_the_printed_seed_reproduces_it(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", trained_run, "--prompt", "the ", "--length", "200", "--temperature", "1.5"]
    drawn = []
    for _ in range(2):
        code, out, err = run_cli(capsys, *args)
        (match,) = SEED_LINE.finditer(err)
        assert code == 0 and match.group(1) == match.group(2)
        drawn.append((int(match.group(1)), out))
    (seed_a, text_a), (seed_b, text_b) = drawn
    assert seed_a != seed_b and text_a != text_b
    for seed, text in drawn:
        code, out, err = run_cli(capsys, *args, "--seed", seed)
        assert code == 0 and out == text and not SEED_LINE.search(err)


def test_missing_seed_jsonl_carries_it(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", trained_run, "--prompt", "the ", "--length", "8", "--format", "jsonl"]
    code, out, err = run_cli(capsys, *args, "--num-samples", "2")
    (match,) = SEED_LINE.finditer(err)
    seed = int(match.group(1))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {(r["sample"], r["seed"]) for r in rows} == {(0, seed), (1, seed + 1)}
    # sample 1 of the batch is the sample drawn alone with seed + 1
    code, alone, _ = run_cli(capsys, *args, "--seed", seed + 1)
    tokens = [r["token"] for r in rows if r["sample"] == 1]
    assert [json.loads(line)["token"] for line in alone.splitlines()] == tokens


def test_explicit_seed_matches_the_api(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "generate", trained_run, "--prompt", "the ", "--length", "60", "--seed", "0"
    )
    text = chargen.load(trained_run).generate("the ", length=60)  # the API's seed is 0
    assert code == 0 and out == f"the {text}\n" and err == ""


# --------------------------------------------------------------------------- score / eval
def test_score_decodes_like_eval(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shouting = tmp_path / "shouting.txt"
    shouting.write_text(make_text(400, seed=3).upper(), encoding="utf-8")
    code, as_is, err = run_cli(capsys, "score", trained_run, shouting)
    assert code == 0 and "warning" in err  # upper case is missing from the vocabulary
    code, lowered, _ = run_cli(capsys, "score", trained_run, shouting, "--lowercase")
    chars = [
        int(re.search(r"over ([\d,]+) chars", o)[1].replace(",", "")) for o in (as_is, lowered)
    ]
    assert code == 0 and chars[0] < chars[1] == len(shouting.read_text())

    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"the cat sees the moon.\xff\nthe dog\n")
    code, _, err = run_cli(capsys, "score", trained_run, latin)
    assert "latin-1" in one_line_error(code, err)
    for flags in (["--encoding", "latin-1"], ["--errors", "replace"], ["--errors", "ignore"]):
        code, out, _ = run_cli(capsys, "score", trained_run, latin, *flags)
        assert code == 0 and "bits/char" in out


def test_eval_names_the_part_scored(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.txt"
    other.write_text(make_text(3000, seed=5), encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", trained_run, other)
    assert code == 0 and out.startswith(f"validation split (last 10% of the tokens) of {other}:")
    code, out, _ = run_cli(capsys, "eval", trained_run, other, "--json")
    part = json.loads(out)
    assert part["scored"] == f"validation split (last 10% of the tokens) of {other}"
    assert part["split"] == "validation"
    code, out, _ = run_cli(capsys, "eval", trained_run, other, "--all")
    assert code == 0 and out.startswith(f"the whole text of {other}:")
    code, out, _ = run_cli(capsys, "eval", trained_run, other, "--all", "--json")
    whole = json.loads(out)
    assert whole["scored"] == f"the whole text of {other}" and whole["split"] == "all"
    assert 8 * part["chars"] < whole["chars"] < 11 * part["chars"]
