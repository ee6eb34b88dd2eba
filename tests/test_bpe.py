"""The optional BPE tokenizer: exact round trips, per-character lengths, persistence, streaming."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers")

from chargen import prepare as prepare_module  # noqa: E402
from chargen import tokenizer_plain as plain_module  # noqa: E402  (CHUNK_CHARS lives there)
from chargen.cli import main  # noqa: E402
from chargen.corpus import load_corpus  # noqa: E402
from chargen.errors import ConfigError, TokenizerError  # noqa: E402
from chargen.evaluate import token_char_lengths  # noqa: E402
from chargen.prepare import open_prepared, prepare  # noqa: E402
from chargen.tokenizer import (  # noqa: E402
    UNK,
    UNK_TEXT,
    BPETokenizer,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
)
from tests.conftest import TINY_FLAGS, make_text  # noqa: E402

TRICKY = {
    "spaces": "  two  leading, three   inside and trailing   ",
    "tabs_newlines": "a\tb\t\tc\n\nd \n \t\n",
    "korean": "언어 모델은 다음 글자를 예측한다. 온도가 낮으면 반복적이다.\n",
    "greek": "Καλημέρα κόσμε! Η γλώσσα, η λέξη.\n",
    "cjk": "中文字符和日本語のテキスト。漢字、かな\n",
    "emoji": "family 👨\u200d👩\u200d👧\u200d👦, flags 🇰🇷🇫🇷, skin 👍🏽, astral 𝄞 and 😀😀\n",
    "mixed": "naïve café — ﬁ ligature, e\u0301 combining, ١٢٣ \u00a0nbsp\t <unk> 中\n",
}


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


@pytest.fixture(scope="module")
def english() -> BPETokenizer:
    tok = build_tokenizer("bpe", make_text(20_000), max_vocab=200)
    assert isinstance(tok, BPETokenizer)
    return tok


# --- round trips and surface tokens -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_round_trip_on_tricky_text(name: str) -> None:
    text = TRICKY[name] * 3
    tok = build_tokenizer("bpe", text, max_vocab=120)
    ids = tok.encode(text)
    assert tok.kind == "bpe" and tok.unk_id == 0 and tok.vocab[0] == UNK
    assert ids.dtype == np.int64 and ids.ndim == 1 and ids.min() > 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(ids.tolist()) == text
    assert "".join(tok.vocab[i] for i in ids) == text
    assert "".join(tok.split(text)) == text and len(tok.split(text)) == len(ids)
    assert len(ids) < len(text)  # merges happened


def test_round_trip_of_every_sample_with_one_vocabulary() -> None:
    text = "".join(TRICKY.values())
    tok = build_tokenizer("bpe", text)
    for sample in TRICKY.values():
        assert tok.decode(tok.encode(sample)) == sample
    assert tok.unknown_symbols(text) == []


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300), st.integers(2, 80))
def test_round_trip_on_any_text(text: str, max_vocab: int) -> None:
    tok = build_tokenizer("bpe", text, max_vocab=max_vocab)
    assert tok.vocab_size <= max_vocab
    ids = tok.encode(text)
    missing = [ch for ch in text if ch not in tok.stoi]
    assert int((ids == tok.unk_id).sum()) == len(missing)
    expected = "".join(UNK_TEXT if ch not in tok.stoi else ch for ch in text)
    assert tok.decode(ids) == expected
    if not missing:
        assert tok.decode(ids) == text
    assert tok.unknown_symbols(text) == list(dict.fromkeys(missing))


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab ,\n\t😀é"), max_size=120), st.integers(1, 9))
def test_encoding_in_pieces_equals_encoding_the_whole(text: str, chunk: int) -> None:
    tok = build_tokenizer("bpe", "ab ba, a\tb\n😀é " * 4)
    whole = tok.encode(text)
    with mock.patch.object(plain_module, "CHUNK_CHARS", chunk):
        assert np.array_equal(tok.encode(text), whole)
        assert tok.to_dict() == build_tokenizer("bpe", "ab ba, a\tb\n😀é " * 4).to_dict()


def test_unknown_characters_become_unk(english: BPETokenizer) -> None:
    ids = english.encode("the cat ☃ sees 中文!")
    assert (ids == 0).sum() == 4  # ☃, 中, 文 and "!" are not in the training text
    assert english.decode(ids) == f"the cat {UNK_TEXT} sees {UNK_TEXT}{UNK_TEXT}{UNK_TEXT}"
    assert english.unknown_symbols("☃ the 中☃") == ["☃", "中"]
    assert english.split("a☃b") == ["a", "☃", "b"]
    for policy in ("error", "drop", "warn"):  # <unk> absorbs them: nothing is dropped
        assert np.array_equal(english.encode("☃ the", unknown=policy), english.encode("☃ the"))
    assert english.encode("").tolist() == []


def test_lone_surrogates_are_unknown(english: BPETokenizer) -> None:
    assert english.decode(english.encode("the \ud800cat")) == f"the {UNK_TEXT}cat"


def test_token_char_lengths_count_every_character(english: BPETokenizer) -> None:
    text = make_text(3000, seed=7)
    ids = english.encode(text)
    lengths = token_char_lengths(english.vocab)
    assert int(lengths[ids].sum()) == len(text)
    assert lengths.max() > 1  # real subwords


def test_deterministic_and_vocab_bound() -> None:
    text = make_text(8000, seed=3) + "".join(TRICKY.values())
    first, second = (
        build_tokenizer("bpe", text, max_vocab=150),
        build_tokenizer("bpe", text, max_vocab=150),
    )
    assert first.to_dict() == second.to_dict()
    assert np.array_equal(first.encode(text), second.encode(text))
    assert first.vocab_size == 150
    assert build_tokenizer("bpe", text).vocab_size <= 1024


def test_deterministic_across_processes(tmp_path: Path) -> None:
    code = (
        "import json, sys; from chargen.tokenizer import build_tokenizer; "
        "print(json.dumps(build_tokenizer('bpe', sys.stdin.read(), max_vocab=90).to_dict()))"
    )
    text = make_text(4000, seed=5) + "".join(TRICKY.values())
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert json.loads(runs[0]) == build_tokenizer("bpe", text, max_vocab=90).to_dict()


def test_too_many_characters_keeps_the_most_frequent() -> None:
    tok = build_tokenizer("bpe", "aaaa bbb cc d ☃", max_vocab=4)
    assert tok.vocab == [UNK, " ", "a", "b"] and tok.merges == []
    assert tok.decode(tok.encode("ab d")) == f"ab {UNK_TEXT}"


@pytest.mark.parametrize("bad", [1, 0, -3, True, 2.5, "10"])
def test_bad_max_vocab(bad: object) -> None:
    with pytest.raises(ConfigError, match="--max-vocab") as err:
        build_tokenizer("bpe", "abc", max_vocab=bad)  # type: ignore[arg-type]
    _one_line(err)


def test_empty_text() -> None:
    with pytest.raises(TokenizerError, match="empty"):
        build_tokenizer("bpe", "")


def test_missing_tokenizers_package_is_one_line(english: BPETokenizer) -> None:
    saved = english.to_dict()
    with mock.patch.dict(sys.modules, {"tokenizers": None}):
        with pytest.raises(ConfigError, match=r"pip install 'chargen\[bpe\]'") as err:
            build_tokenizer("bpe", "abc")
        _one_line(err)
        with pytest.raises(ConfigError, match="tokenizers package"):
            Tokenizer.from_dict(saved)


# --- persistence --------------------------------------------------------------------------


def test_save_load_round_trip(english: BPETokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    english.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["kind"] == "bpe" and data["merges"] and data["unk"] == 0
    loaded = load_tokenizer(path)
    assert isinstance(loaded, BPETokenizer)
    assert loaded.to_dict() == english.to_dict()
    text = make_text(2000, seed=9) + " ☃ "
    assert np.array_equal(loaded.encode(text), english.encode(text))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"merges": None}, "merges must be a list"),
        ({"merges": "t h"}, "merges must be a list"),
        ({"merges": [["t"]]}, "merges must be a list"),
        ({"merges": [["t", 5]]}, "merges must be a list"),
        ({"merges": [["t", "zz"]]}, "does not fit the vocabulary"),
        ({"merges": [["<", "unk>"]]}, "does not fit the vocabulary"),
        ({"unk": None}, "unk"),
        ({"unk": 3}, "unk"),
        ({"vocab": "abc"}, "list of strings"),
        ({"vocab": ["<unk>", "a", "a"]}, "repeat"),
        ({"kind": "sentencepiece"}, "expected char, word or bpe"),
    ],
)
def test_malformed_file_is_one_line_error(
    english: BPETokenizer, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    data = {**english.to_dict(), **change}
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match=message) as err:
        load_tokenizer(path)
    assert _one_line(err).startswith(str(path))


# --- streaming preparation and the command line ------------------------------------------


@pytest.mark.parametrize("max_vocab", [None, 60, 5])
def test_prepare_equals_building_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_vocab: int | None
) -> None:
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 997)
    files = tmp_path / "src"
    files.mkdir()
    (files / "a.txt").write_bytes(
        ("\ufeffΑλφα line\r\n" + make_text(5000, seed=1).replace("\n", "\r\n")).encode()
    )
    (files / "b.txt").write_bytes(("naïve   café\r" * 300 + "end 中文").encode())
    meta = prepare(
        str(files),
        tmp_path / "data",
        tokenizer="bpe",
        max_vocab=max_vocab,
        lowercase=True,
        progress=False,
    )
    data = open_prepared(tmp_path / "data")
    text = load_corpus(str(files), lowercase=True).text
    tok = build_tokenizer("bpe", text, max_vocab=max_vocab)
    assert data.tokenizer.to_dict() == tok.to_dict()
    assert np.array_equal(np.asarray(data.ids), tok.encode(text))
    assert meta["tokens"] == len(data.ids) and meta["chars"] == len(text)
    assert meta["tokenizer"] == "bpe" and meta["vocab_size"] == tok.vocab_size
    if max_vocab is None:
        assert data.tokenizer.decode(np.asarray(data.ids)) == text


def test_prepare_rejects_empty_and_blank_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chargen.errors import CorpusError

    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 997)
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "blank.txt").write_text(" \n\t " * 500, encoding="utf-8")
    for name in ("empty.txt", "blank.txt"):
        with pytest.raises(CorpusError) as err:
            prepare(str(tmp_path / name), tmp_path / "d", tokenizer="bpe", progress=False)
        _one_line(err)


def test_train_generate_eval_with_bpe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", str(corpus), "--out", str(run), "--steps", "30", *TINY_FLAGS]
    assert main([*args, "--tokenizer", "bpe", "--max-vocab", "200"]) == 0
    saved = load_tokenizer(run / "tokenizer.json")
    assert isinstance(saved, BPETokenizer) and saved.vocab_size <= 200
    assert saved.to_dict() == build_tokenizer("bpe", make_text(), max_vocab=200).to_dict()
    capsys.readouterr()

    assert main(["generate", str(run), "--prompt", "the ", "--length", "20", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the ") and len(out.strip()) > len("the")
    assert main(["generate", str(run), "--prompt", "the ", "--length", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out == out

    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bits_per_char"] == pytest.approx(result["nats_per_char"] / np.log(2))
    assert 0 < result["bits_per_char"] < 8
    text = make_text()
    ids = saved.encode(text)
    val_chars = int(token_char_lengths(saved.vocab)[ids[int(len(ids) * 0.9) :]].sum())
    assert 0.8 * val_chars <= result["chars"] <= val_chars  # characters, not tokens
    assert result["chars"] > 1.5 * (len(ids) - int(len(ids) * 0.9))
