"""Tokenizers: exact round-trips on any Unicode, the unknown-symbol policy, JSON persistence."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen.corpus import load_corpus
from chargen.errors import TokenizerError
from chargen.tokenizer import (
    CharTokenizer,
    UnknownSymbolsWarning,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
)

SAMPLES = {
    "ascii": "Hello, world!\nThe quick brown fox.\t42\n",
    "korean": "언어 모델은 다음 글자를 예측한다. 온도가 낮으면 반복적이다.\n",
    "emoji": "family 👨‍👩‍👧‍👦, flags 🇰🇷🇫🇷, astral 𝄞 and 😀😀\n",
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("kind", ["char", "word"])
def test_round_trip(name: str, kind: str) -> None:
    text = SAMPLES[name]
    tok = build_tokenizer(kind, text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.min() >= 0 and ids.max() < tok.vocab_size


def test_char_vocabulary_is_code_point_order() -> None:
    tok = build_tokenizer("char", "banana\n")
    assert tok.vocab == ["\n", "a", "b", "n"]
    assert tok.encode("nab").tolist() == [3, 1, 2]


def test_crlf_and_bom_through_the_corpus(tmp_path: Path) -> None:
    path = tmp_path / "windows.txt"
    path.write_bytes("\ufeffline one\r\nline two\r\n줄 셋\r\n".encode())
    text = load_corpus(str(path)).text
    assert text == "line one\nline two\n줄 셋\n"
    tok = build_tokenizer("char", text)
    assert "\r" not in tok.vocab and "\ufeff" not in tok.vocab
    assert tok.decode(tok.encode(text)) == text


def test_unknown_policy() -> None:
    tok = build_tokenizer("char", "abc ")
    with pytest.raises(TokenizerError, match="--unknown drop") as info:
        tok.encode("a☃b✓")
    assert "\n" not in str(info.value)
    assert tok.encode("a☃b✓", unknown="drop").tolist() == tok.encode("ab").tolist()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tok.decode(tok.encode("a☃b☃✓", unknown="warn")) == "ab"
    assert len(caught) == 1 and issubclass(caught[0].category, UnknownSymbolsWarning)
    assert tok.unknown_symbols("x☃yx") == ["x", "☃", "y"]


def test_word_max_vocab_and_unk() -> None:
    text = "the cat and the dog and the bird. "
    tok = build_tokenizer("word", text, max_vocab=4)
    assert isinstance(tok, WordTokenizer) and tok.vocab_size == 4 and tok.unk_id is not None
    ids = tok.encode("the zebra")
    assert tok.unk_id in ids.tolist()
    assert tok.decode(ids) == "the \ufffd"
    full = build_tokenizer("word", text)
    assert full.unk_id is None and full.decode(full.encode(text)) == text


def test_save_and_load(tmp_path: Path) -> None:
    for kind in ("char", "word"):
        tok = build_tokenizer(kind, SAMPLES["korean"] + SAMPLES["emoji"])
        tok.save(tmp_path / f"{kind}.json")
        again = load_tokenizer(tmp_path / f"{kind}.json")
        assert type(again) is type(tok) and again.vocab == tok.vocab and again.unk_id == tok.unk_id


@pytest.mark.parametrize(
    "content", ["{broken", '{"format": "other"}', '{"format": "chargen-tokenizer", "version": 7}']
)
def test_corrupt_tokenizer_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(path)


def test_large_cjk_vocabulary() -> None:
    text = "".join(chr(0x4E00 + i) for i in range(20_000)) * 2
    tok = build_tokenizer("char", text)
    assert tok.vocab_size == 20_000
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_round_trip_on_any_unicode(text: str) -> None:
    tok = CharTokenizer.build(text) if text else CharTokenizer(["a"])
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_word_round_trip_on_any_unicode(text: str) -> None:
    if not text:
        return
    tok = build_tokenizer("word", text)
    assert tok.decode(tok.encode(text)) == text
