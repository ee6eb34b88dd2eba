"""Tokenizers: exact round-trips on any Unicode, the unknown-symbol policy, JSON persistence."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen import tokenizer_plain as plain_module  # CHUNK_CHARS and _word_pieces live there
from chargen.corpus import load_corpus
from chargen.errors import ConfigError, TokenizerError
from chargen.tokenizer import (
    UNK,
    CharTokenizer,
    Tokenizer,
    UnknownSymbolsWarning,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
)

SAMPLES = {
    "ascii": "Hello, world!\nThe quick brown fox.\t42  spaces\n",
    "korean": "언어 모델은 다음 글자를 예측한다. 온도가 낮으면 반복적이다.\n",
    "emoji": "family 👨\u200d👩\u200d👧\u200d👦, flags 🇰🇷🇫🇷, skin 👍🏽, astral 𝄞 and 😀😀\n",
    "mixed": "naïve café — ﬁ ligature, e\u0301 combining, 中文 ١٢٣ \u00a0nbsp\t\n\n",
}


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("kind", ["char", "word"])
def test_round_trip(name: str, kind: str) -> None:
    text = SAMPLES[name]
    tok = build_tokenizer(kind, text)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(ids.tolist()) == text
    assert tok.decode(torch.from_numpy(ids)) == text
    assert tok.unk_id is None and tok.unknown_symbols(text) == []


def test_char_vocabulary_is_code_point_order() -> None:
    tok = build_tokenizer("char", "banana\n😀é")
    assert isinstance(tok, CharTokenizer) and tok.kind == "char"
    assert tok.vocab == ["\n", "a", "b", "n", "é", "😀"]
    assert tok.encode("nab😀").tolist() == [3, 1, 2, 5]
    assert tok.vocab_size == 6


def test_emoji_sequences_are_their_code_points() -> None:
    family = "👨\u200d👩\u200d👧"
    tok = build_tokenizer("char", family)
    assert len(tok.encode(family)) == 5  # three astral code points and two joiners
    assert tok.decode(tok.encode(family)) == family


def test_korean_characters_are_symbols() -> None:
    text = "언어 모델은 다음 글자를 예측한다"
    tok = build_tokenizer("char", text)
    assert tok.vocab_size == len(set(text)) and "언" in tok.vocab
    assert tok.decode(tok.encode(text)) == text


def test_one_symbol_vocabulary() -> None:
    tok = build_tokenizer("char", "aaaa")
    assert tok.vocab == ["a"] and tok.encode("aa").tolist() == [0, 0]


def test_crlf_and_bom_through_the_corpus(tmp_path: Path) -> None:
    path = tmp_path / "windows.txt"
    path.write_bytes("\ufeffline one\r\nline two\r\n줄 셋 👋\r\n".encode())
    text = load_corpus(str(path)).text
    assert text == "line one\nline two\n줄 셋 👋\n"
    for kind in ("char", "word"):
        tok = build_tokenizer(kind, text)
        assert "\r" not in "".join(tok.vocab) and "\ufeff" not in "".join(tok.vocab)
        assert tok.decode(tok.encode(text)) == text


def test_large_cjk_vocabulary() -> None:
    text = "".join(chr(0x4E00 + i) for i in range(20_000)) * 2 + "😀"
    tok = build_tokenizer("char", text)
    assert tok.vocab_size == 20_001
    ids = tok.encode(text)
    assert ids[:3].tolist() == [0, 1, 2] and ids[-1] == 20_000
    assert tok.decode(ids) == text


def test_long_text_is_encoded_in_pieces_exactly() -> None:
    """Pieces of 7 characters: every chunk edge case gives the same ids as a plain loop."""
    text = "The  cat's 42 naps,\n\n  then 😀 more!!  " * 20
    with mock.patch.object(plain_module, "CHUNK_CHARS", 7):
        for kind in ("char", "word"):
            tok = build_tokenizer(kind, text)
            expected = [tok.stoi[t] for t in tok.split(text)]
            assert tok.encode(text).tolist() == expected
            assert tok.decode(tok.encode(text)) == text


# --- word tokenizer -----------------------------------------------------------------------


def test_word_tokens_are_words_punctuation_and_whitespace_runs() -> None:
    tok = build_tokenizer("word", "Hi, you  there!\n\tok")
    assert isinstance(tok, WordTokenizer) and tok.kind == "word"
    assert tok.split("Hi, you  there!\n\tok") == [
        "Hi",
        ",",
        " ",
        "you",
        "  ",
        "there",
        "!",
        "\n\t",
        "ok",
    ]
    assert tok.vocab == sorted(tok.vocab)


def test_word_max_vocab_keeps_the_most_frequent_plus_unk() -> None:
    text = "the cat and the dog and the bird. "
    tok = build_tokenizer("word", text, max_vocab=4)
    # counts: " " 8, "the" 3, "and" 2, then ties at 1 broken by first appearance: "cat"
    assert tok.vocab == [UNK, " ", "and", "the"] and tok.unk_id == 0 and tok.vocab_size == 4
    ids = tok.encode("the zebra and the cat")
    assert ids.tolist() == [3, 1, 0, 1, 2, 1, 3, 1, 0]
    assert tok.decode(ids) == "the \ufffd and the \ufffd"
    assert tok.unknown_symbols("the zebra") == ["zebra"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unknowns map to <unk>: no error, no warning
        assert tok.encode("zebra", unknown="error").tolist() == [0]
        assert tok.encode("zebra", unknown="warn").tolist() == [0]


def test_tie_break_is_first_appearance() -> None:
    tok = build_tokenizer("word", "b a c", max_vocab=3)  # all counts 1 except " " (2)
    assert tok.vocab == [UNK, " ", "b"]
    assert build_tokenizer("word", "c a b", max_vocab=3).vocab == [UNK, " ", "c"]


def test_max_vocab_always_adds_unk_and_counts_it() -> None:
    text = "a b a"
    assert build_tokenizer("word", text).unk_id is None
    tok = build_tokenizer("word", text, max_vocab=100)
    assert tok.unk_id == 0 and tok.vocab == [UNK, " ", "a", "b"]
    for bad in (1, 0, -3):
        with pytest.raises(ConfigError, match="--max-vocab") as info:
            build_tokenizer("word", text, max_vocab=bad)
        _one_line(info)


def test_char_max_vocab() -> None:
    text = "aaaabbbcc d"
    tok = build_tokenizer("char", text, max_vocab=3)
    assert tok.vocab == [UNK, "a", "b"] and tok.unk_id == 0
    assert tok.decode(tok.encode("abcx")) == "ab\ufffd\ufffd"


def test_word_round_trip_keeps_whitespace_exactly() -> None:
    text = "  leading\tand trailing \n\n\n  spaces   "
    tok = build_tokenizer("word", text)
    assert tok.decode(tok.encode(text)) == text
    assert {"  ", "\t", " \n\n\n  ", "   "} <= set(tok.vocab)


# --- unknown symbols ----------------------------------------------------------------------


def test_unknown_policy_error() -> None:
    tok = build_tokenizer("char", "abc ")
    with pytest.raises(TokenizerError) as info:
        tok.encode("a☃b✓\n")
    message = _one_line(info)
    assert "'☃'" in message and "'✓'" in message and "'\\n'" in message
    assert "--unknown drop" in message


def test_unknown_policy_error_names_at_most_ten() -> None:
    tok = build_tokenizer("char", "a")
    with pytest.raises(TokenizerError) as info:
        tok.encode("bcdefghijklmnop")
    message = _one_line(info)
    assert "'k'" in message and "'l'" not in message and "5 more" in message


def test_unknown_policy_drop_and_warn() -> None:
    tok = build_tokenizer("char", "abc ")
    assert tok.encode("a☃b✓", unknown="drop").tolist() == tok.encode("ab").tolist()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tok.decode(tok.encode("a☃b☃✓", unknown="warn")) == "ab"
    assert len(caught) == 1 and issubclass(caught[0].category, UnknownSymbolsWarning)
    assert "'☃'" in str(caught[0].message) and "'✓'" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller of encode
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tok.encode("abc", unknown="warn").tolist() == [1, 2, 3]  # nothing unknown


def test_unknown_policy_for_words() -> None:
    tok = build_tokenizer("word", "hello world")
    with pytest.raises(TokenizerError, match="'there'"):
        tok.encode("hello there")
    assert tok.decode(tok.encode("hello there world", unknown="drop")) == "hello  world"


def test_unknown_symbols_in_order_of_first_appearance() -> None:
    tok = build_tokenizer("char", "abc")
    assert tok.unknown_symbols("x☃yx😀a") == ["x", "☃", "y", "😀"]
    assert tok.unknown_symbols("cab") == []
    assert build_tokenizer("word", "a b").unknown_symbols("a zz, b zz") == ["zz", ","]


def test_bad_unknown_policy() -> None:
    with pytest.raises(ConfigError, match="--unknown"):
        build_tokenizer("char", "abc").encode("a", unknown="ignore")


def test_bad_kind() -> None:
    with pytest.raises(ConfigError, match="char or word"):
        build_tokenizer("sentencepiece", "abc")


def test_empty_text_has_no_vocabulary() -> None:
    with pytest.raises(TokenizerError, match="empty"):
        build_tokenizer("char", "")
    assert build_tokenizer("char", "a").encode("").tolist() == []


# --- decode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids",
    [[-1], [4], np.array([0, 9]), np.array([0.0, 1.0]), np.zeros((2, 2), dtype=np.int64), 3],
)
def test_decode_refuses_bad_ids(ids: object) -> None:
    tok = build_tokenizer("char", "abcd")
    with pytest.raises(TokenizerError) as info:
        tok.decode(ids)
    _one_line(info)


def test_decode_accepts_every_sequence_kind() -> None:
    tok = build_tokenizer("char", "abcd")
    assert tok.decode([]) == "" and tok.decode(np.array([], dtype=np.int64)) == ""
    assert tok.decode((3, 0)) == "da"
    assert tok.decode(np.array([3, 0], dtype=np.uint8)) == "da"
    assert tok.decode(torch.tensor([3, 0])) == "da"
    assert tok.decode(list(range(4)) * 100) == "abcd" * 100  # the vectorised path


# --- persistence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, max_vocab", [("char", None), ("word", None), ("word", 5), ("char", 4)]
)
def test_save_and_load(tmp_path: Path, kind: str, max_vocab: int | None) -> None:
    text = SAMPLES["korean"] + SAMPLES["emoji"] + SAMPLES["ascii"]
    tok = build_tokenizer(kind, text, max_vocab=max_vocab)
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    raw = path.read_text(encoding="utf-8")
    assert "언" in raw or max_vocab  # non-ASCII kept as is
    data = json.loads(raw)
    assert data == {
        "format": "chargen-tokenizer",
        "version": 1,
        "kind": kind,
        "vocab": tok.vocab,
        "unk": tok.unk_id,
    }
    again = load_tokenizer(path)
    assert type(again) is type(tok) and again.vocab == tok.vocab and again.unk_id == tok.unk_id
    assert again.encode(text, unknown="drop").tolist() == tok.encode(text, unknown="drop").tolist()
    assert Tokenizer.from_dict(tok.to_dict()).vocab == tok.vocab
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temporaries


def test_whitespace_symbols_survive_json(tmp_path: Path) -> None:
    tok = build_tokenizer("char", "a b\tc\nd\u00a0e\u2028f")
    tok.save(tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json")
    assert again.vocab == tok.vocab and {" ", "\t", "\n", "\u00a0", "\u2028"} <= set(again.vocab)


_VALID = {"format": "chargen-tokenizer", "version": 1, "kind": "char", "vocab": ["a"], "unk": None}


@pytest.mark.parametrize(
    "content",
    [
        "{broken",
        "",
        "[1, 2]",
        '{"format": "other"}',
        json.dumps({**_VALID, "version": 7}),
        json.dumps({**_VALID, "kind": "bpe"}),
        json.dumps({**_VALID, "vocab": "abc"}),
        json.dumps({**_VALID, "vocab": []}),
        json.dumps({**_VALID, "vocab": ["a", "a"]}),
        json.dumps({**_VALID, "vocab": ["a", 3]}),
        json.dumps({**_VALID, "vocab": ["ab"]}),
        json.dumps({**_VALID, "unk": 5}),
        json.dumps({**_VALID, "unk": 0}),  # vocab[0] is not <unk>
        json.dumps({**_VALID, "unk": True}),
        json.dumps({**_VALID, "kind": "word", "vocab": ["a", ""]}),
        json.dumps({**_VALID, "kind": "word", "vocab": ["a", UNK]}),  # <unk> without unk id
    ],
)
def test_corrupt_or_foreign_tokenizer_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(path)
    assert _one_line(info).startswith(str(path))


def test_missing_or_unreadable_tokenizer_file(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="not found") as info:
        load_tokenizer(tmp_path / "nope.json")
    assert "nope.json" in _one_line(info)
    (tmp_path / "latin.json").write_bytes(b'{"vocab": "\xe9"}')
    with pytest.raises(TokenizerError, match="latin.json"):
        load_tokenizer(tmp_path / "latin.json")
    with pytest.raises(TokenizerError, match="cannot read"):
        load_tokenizer(tmp_path)


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_char_round_trip_on_any_unicode(text: str) -> None:
    tok = build_tokenizer("char", text)
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert tok.vocab == sorted(set(text))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_word_round_trip_on_any_unicode(text: str) -> None:
    tok = build_tokenizer("word", text)
    assert tok.decode(tok.encode(text)) == text
    assert "".join(tok.split(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.text())
def test_drop_keeps_exactly_the_known_symbols(train: str, prompt: str) -> None:
    tok = build_tokenizer("char", train)
    known = "".join(ch for ch in prompt if ch in tok.stoi)
    assert tok.decode(tok.encode(prompt, unknown="drop")) == known
    assert tok.unknown_symbols(prompt) == list(
        dict.fromkeys(ch for ch in prompt if ch not in tok.stoi)
    )


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab ,\n\t😀é"), max_size=60), st.integers(1, 9))
def test_word_pieces_never_split_a_token(text: str, chunk: int) -> None:
    with mock.patch.object(plain_module, "CHUNK_CHARS", chunk):
        pieces = list(plain_module._word_pieces(text))
    assert "".join(pieces) == text
    assert [t for p in pieces for t in plain_module.WORD_PATTERN.findall(p)] == (
        plain_module.WORD_PATTERN.findall(text)
    )


# --- the registry of kinds ----------------------------------------------------------------


def test_the_registry_and_the_config_name_the_same_kinds() -> None:
    """``config.TOKENIZER_KINDS`` (what a run accepts) and ``TOKENIZERS`` cannot drift."""
    from chargen.config import TOKENIZER_KINDS
    from chargen.tokenizer import KINDS, TOKENIZERS

    assert set(TOKENIZER_KINDS) == set(TOKENIZERS)
    assert tuple(TOKENIZERS) == KINDS
    assert all(cls.kind == kind and issubclass(cls, Tokenizer) for kind, cls in TOKENIZERS.items())


def test_unknown_kinds_keep_their_messages() -> None:
    with pytest.raises(ConfigError) as info:
        build_tokenizer("bytes", "abc")
    assert _one_line(info) == "--tokenizer must be char or word or bpe, got 'bytes'"
    data = CharTokenizer.build("abc").to_dict()
    for kind in ("bytes", ["char"], None):
        with pytest.raises(TokenizerError) as err:
            Tokenizer.from_dict({**data, "kind": kind})
        assert _one_line(err) == f"unknown tokenizer kind {kind!r} (expected char, word or bpe)"


def _kinds() -> list[str]:
    from chargen.tokenizer import TOKENIZERS

    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return [kind for kind in TOKENIZERS if kind != "bpe"]
    return list(TOKENIZERS)


@settings(max_examples=25, deadline=None)
@given(
    text=st.text(alphabet="ab Σé中😀\n\t.,", min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=10),
    max_vocab=st.sampled_from([None, 3, 40]),
)
def test_each_kind_streams_what_it_builds(
    text: str, cuts: list[int], max_vocab: int | None
) -> None:
    """For every registered kind: ``from_chunks`` of the text cut anywhere is ``build`` of the
    text, and encoding the ``pieces`` of those chunks one by one is encoding the text."""
    from chargen.tokenizer import TOKENIZERS

    edges = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    chunks = [text[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    for kind in _kinds():
        cls = TOKENIZERS[kind]
        whole = build_tokenizer(kind, text, max_vocab=max_vocab)
        streamed = cls.from_chunks(iter(chunks), max_vocab)
        assert type(streamed) is cls and streamed.to_dict() == whole.to_dict()
        parts = [whole.encode(piece) for piece in cls.pieces(iter(chunks))]
        assert np.array_equal(np.concatenate(parts), whole.encode(text))


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_from_chunks_of_nothing_is_the_empty_text_error(kind: str) -> None:
    from chargen.tokenizer import TOKENIZERS

    if kind not in _kinds():
        pytest.skip("the bpe kind needs the tokenizers package")
    with pytest.raises(TokenizerError, match="empty text"):
        TOKENIZERS[kind].from_chunks(iter([]))


def test_each_kind_states_its_unit_and_whether_it_frames_lines() -> None:
    """What callers ask of a kind (the page's "per character", ``--lines``) is the class's."""
    from chargen.tokenizer import TOKENIZERS

    stated = {kind: (cls.unit, cls.frames_lines) for kind, cls in TOKENIZERS.items()}
    assert stated == {
        "char": ("character", True),
        "word": ("token", True),
        "bpe": ("token", False),
    }
