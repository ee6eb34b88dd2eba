"""Character-exact constraints: a regex matched in full (sampling, greedy, beams, the server),
banned characters and strings (never written, even across token boundaries), logit bias."""

from __future__ import annotations

import json
import re
import warnings
from functools import cache
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargen import constraints
from chargen.chain import SamplingChain
from chargen.cli import main as cli_main
from chargen.config import ModelConfig
from chargen.errors import ChargenError, SamplingError
from chargen.generate import beam_generate, generate, token_strings
from chargen.models import build_model
from chargen.sampling import SamplingConfig
from chargen.tokenizer import Tokenizer, build_tokenizer
from tests.conftest import make_text

TEXT = "the quick brown fox jumps over the lazy dog. THE END 0123456789-:\n"
LETTERS = "abcdefgh"  # what the pattern grammar writes literals and classes with


@cache
def _model(kind: str) -> tuple[torch.nn.Module, Tokenizer]:
    """An untrained LSTM over a vocabulary of ``kind`` (the masks, not the model, are tested)."""
    if kind == "char":
        tok = build_tokenizer("char", TEXT)
    elif kind == "bpe":
        pytest.importorskip("tokenizers")
        tok = build_tokenizer("bpe", make_text(), max_vocab=120)
    else:
        tok = build_tokenizer(kind, make_text())
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tok.vocab_size, embed_dim=8, hidden_size=24, num_layers=1)
    return build_model(config).eval(), tok


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------- a small grammar
def _atoms() -> st.SearchStrategy[tuple[str, int]]:
    """(pattern, longest match) of a literal or a character class."""
    literal = st.sampled_from(LETTERS).map(lambda c: (c, 1))
    chars = st.text(alphabet=LETTERS, min_size=1, max_size=4).map(lambda s: (f"[{s}]", 1))
    span = st.sampled_from(["[a-c]", "[b-h]", r"\d", "[0-3]"]).map(lambda s: (s, 1))
    return st.one_of(literal, chars, span)


def _concat(parts: list[tuple[str, int]]) -> tuple[str, int]:
    return "".join(p for p, _ in parts), sum(n for _, n in parts)


def _extend(inner: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
    def alternation(parts: list[tuple[str, int]]) -> tuple[str, int]:
        return "(?:" + "|".join(p for p, _ in parts) + ")", max(n for _, n in parts)

    def repeat(args: tuple[tuple[str, int], int, int]) -> tuple[str, int]:
        (p, n), low, extra = args
        return f"(?:{p}){{{low},{low + extra}}}", n * (low + extra)

    return st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(_concat),
        st.lists(inner, min_size=2, max_size=3).map(alternation),
        inner.map(lambda a: (f"(?:{a[0]})?", a[1])),
        st.tuples(inner, st.integers(0, 2), st.integers(1, 2)).map(repeat),
    )


# (pattern, its longest match): literals, classes, alternation, optional, bounded repetition
PATTERNS = (
    st.lists(st.recursive(_atoms(), _extend, max_leaves=8), min_size=1, max_size=4)
    .map(_concat)
    .filter(lambda p: 0 < p[1] <= 40)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    PATTERNS,
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.7, 1.0, 2.0]),
    st.sampled_from([None, 3]),
)
def test_every_sample_of_a_random_pattern_matches_it_in_full(
    pattern: tuple[str, int], seed: int, temperature: float, top_k: int | None
) -> None:
    """Bounded patterns: after ``longest`` tokens nothing can go on, so every sample is done."""
    text, longest = pattern
    model, tok = _model("char")
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, regex=text)
    samples = generate(model, tok, "x", length=longest, sampling=cfg, num_samples=3, seed=seed)
    for sample in samples:
        assert re.fullmatch(text, sample.text), (text, sample.text)
        assert sample.stop_reason == "regex" and sample.matched is True
    beams = beam_generate(model, tok, "x", beams=3, length=longest, sampling=cfg)
    assert beams and all(re.fullmatch(text, b.text) and b.matched for b in beams)
    scores = [b.logprobs[0] for b in beams]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_multi_character_tokens_walk_the_automaton(kind: str, temperature: float) -> None:
    model, tok = _model(kind)
    pattern = r"(?:the|a) (?:cat|dog|moon)(?: (?:sees|likes) (?:the|a) [a-z]{3,8})?\.\n"
    cfg = SamplingConfig(temperature=temperature, regex=pattern)
    for sample in generate(model, tok, "", length=40, sampling=cfg, num_samples=6, seed=5):
        assert re.fullmatch(pattern, sample.text) and sample.stop_reason == "regex"
    for beam in beam_generate(model, tok, "", beams=4, length=40, sampling=cfg):
        assert re.fullmatch(pattern, beam.text)


def test_tokens_that_lead_where_no_token_can_finish_are_masked() -> None:
    """Word tokens: after "moon" (4 letters) no word of one letter but "a" exists, so a text
    of five letters from b-z cannot start with "moon" although the characters alone could."""
    model, tok = _model("word")
    pattern = r"[b-z]{5}\."
    cfg = SamplingConfig(temperature=2.0, regex=pattern)
    for sample in generate(model, tok, "", length=10, sampling=cfg, num_samples=16, seed=0):
        assert re.fullmatch(pattern, sample.text) and sample.stop_reason == "regex"
    allowed = SamplingChain(cfg, vocab=token_strings(tok)).rules[0].index
    first = {tok.vocab[i] for i in allowed.table(allowed.initial)[0].tolist()}
    assert {"the", "my", "river", "child"} <= first and not {"moon", "sees", "some"} & first


def test_a_batch_equals_its_samples_drawn_alone_and_engines_agree() -> None:
    model, tok = _model("char")
    cfg = SamplingConfig(temperature=1.2, regex=r"[a-h]{1,12}(?:-\d{2,5})?\n")
    batch = generate(model, tok, "the ", length=30, sampling=cfg, num_samples=5, seed=3)
    alone = [generate(model, tok, "the ", length=30, sampling=cfg, seed=3 + i)[0] for i in range(5)]
    assert [s.text for s in batch] == [s.text for s in alone]
    assert len({len(s.tokens) for s in batch}) > 1  # rows ended at different steps
    torch_engine = generate(
        model, tok, "the ", length=30, sampling=cfg, num_samples=5, seed=3, engine="torch"
    )
    assert [s.tokens for s in torch_engine] == [s.tokens for s in batch]


def test_streaming_sees_exactly_the_match() -> None:
    model, tok = _model("char")
    seen: dict[int, str] = {}
    cfg = SamplingConfig(regex=r"\d{4}-\d\d-\d\d")

    def on_text(row: int, text: str) -> None:
        seen[row] = seen.get(row, "") + text

    out = generate(model, tok, "", length=50, sampling=cfg, num_samples=2, seed=0, on_text=on_text)
    assert [seen[0], seen[1]] == [s.text for s in out]
    assert all(len(s.text) == 10 for s in out)


def test_a_sample_cut_short_is_marked_and_warned_about() -> None:
    model, tok = _model("char")
    cfg = SamplingConfig(regex=r"[a-h ]{6,9}\.")  # no match fits in 5 characters
    with pytest.warns(UserWarning, match="before completing --regex"):
        (sample,) = generate(model, tok, "", length=5, sampling=cfg, seed=1)
    assert len(sample.text) == 5 and sample.matched is False and sample.stop_reason == "length"
    assert re.fullmatch(r"[a-h ]+", sample.text)  # the start of a match
    # an open-ended pattern stopped in an accepting state is a match, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (free,) = generate(model, tok, "", length=7, sampling=SamplingConfig(regex="[a-h]+"))
    assert free.matched is True and free.stop_reason == "length" and len(free.text) == 7


def test_beams_cut_off_before_a_match_are_dropped() -> None:
    model, tok = _model("char")
    with pytest.raises(ChargenError, match="no beam completed --regex") as err:
        beam_generate(model, tok, "", beams=2, length=3, sampling=SamplingConfig(regex=r"\d{5}"))
    _one_line(err)
    found = beam_generate(model, tok, "", beams=4, length=6, sampling=SamplingConfig(regex=r"a+"))
    assert found and all(re.fullmatch("a+", b.text) for b in found)


def test_beams_follow_the_automaton_of_the_beam_kept() -> None:
    """Beams swap rows every step; a regex state that did not follow them would let a beam write
    what only another beam's state allows."""
    model, tok = _model("char")
    pattern = r"(?:a|bc|def|gh){3}\n"  # pieces of different lengths: beams in different states
    found = beam_generate(
        model, tok, "", beams=8, length=10, sampling=SamplingConfig(regex=pattern)
    )
    assert len(found) == 8 and all(re.fullmatch(pattern, b.text) for b in found)
    assert len({len(b.text) for b in found}) > 1


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "pattern, needle",
    [
        (r"(a)\1", "backreference"),
        (r"\bthe", r"\b"),
        (r"a^b", "anchor '^'"),
        (r"(?<=a)b", "lookbehind"),
        (r"(?m)a", "MULTILINE"),
        ("[", "unterminated character set"),
        (r"a{0}", "only the empty text"),
        (r"(?:)", "only the empty text"),
        (r"a(?=b)c", "no text matches"),
    ],
)
def test_bad_patterns_are_one_line_errors(pattern: str, needle: str) -> None:
    with pytest.raises(SamplingError) as err:
        SamplingConfig(regex=pattern).validate()
    message = _one_line(err)
    assert message.startswith("--regex") and needle in message


def test_a_pattern_no_token_can_start_is_a_clear_error() -> None:
    model, tok = _model("char")
    with pytest.raises(SamplingError, match="no token of the model's vocabulary can start") as err:
        generate(model, tok, "", length=5, sampling=SamplingConfig(regex="[XYZ]+"))
    _one_line(err)
    # the word vocabulary has no token "ca": it cannot end a text in "ca"
    _, words = _model("word")
    with pytest.raises(SamplingError, match="no sequence of the model's tokens") as err:
        SamplingChain(SamplingConfig(regex="the ca"), vocab=token_strings(words))
    _one_line(err)


def test_huge_automata_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constraints, "MAX_STATES", 300)
    with pytest.raises(SamplingError, match="more than 300 states") as err:
        SamplingConfig(regex="[ab]*a[ab]{9}").validate()
    _one_line(err)


def test_anchors_at_the_ends_change_nothing() -> None:
    model, tok = _model("char")
    plain = generate(model, tok, "", length=9, sampling=SamplingConfig(regex=r"\d{3}"), seed=4)
    anchored = generate(model, tok, "", length=9, sampling=SamplingConfig(regex=r"^\d{3}$"), seed=4)
    assert plain[0].text == anchored[0].text
    assert constraints.matches(SamplingConfig(regex=r"a\$"), "a$")


def test_constraints_need_the_vocabulary() -> None:
    for cfg in (
        SamplingConfig(regex="a"),
        SamplingConfig(ban_chars="e"),
        SamplingConfig(ban_strings=("ab",)),
        SamplingConfig(logit_bias=("a=1",)),
    ):
        with pytest.raises(SamplingError, match="vocabulary"):
            SamplingChain(cfg)
    chain = SamplingChain(SamplingConfig())
    assert chain.done() is None and not chain.ends_rows


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"logit_bias": ("a",)}, "TOKEN=BIAS"),
        ({"logit_bias": ("a=1e9",)}, "[-100, 100]"),
        ({"logit_bias": ("a=1", "a=2")}, "twice"),
        ({"ban_strings": ("",)}, "1 to"),
        ({"ban_strings": "abc"}, "list of strings"),
        ({"ban_chars": 5}, "--ban-chars"),
    ],
)
def test_bad_bans_and_biases(options: dict, needle: str) -> None:
    with pytest.raises(SamplingError) as err:
        SamplingConfig(**options).validate()
    assert needle in _one_line(err)


def test_a_bias_on_a_token_outside_the_vocabulary() -> None:
    model, tok = _model("char")
    with pytest.raises(SamplingError, match="not a token") as err:
        generate(model, tok, "", length=3, sampling=SamplingConfig(logit_bias=("zz=2",)))
    _one_line(err)


def test_lists_become_tuples_and_round_trip_through_json() -> None:
    cfg = SamplingConfig(ban_strings=["ab"], logit_bias=["a=1.5"], regex="a+").validate()  # type: ignore[arg-type]
    assert cfg.ban_strings == ("ab",) and cfg.logit_bias == ("a=1.5",)
    again = SamplingConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert (again.regex, again.ban_strings, again.logit_bias) == ("a+", ("ab",), ("a=1.5",))
    hash(SamplingChain(SamplingConfig(ban_chars="e"), vocab=["a", "e"]).key)


# --------------------------------------------------------------------------- bans and bias
def _banned_in(prompt: str, text: str, banned: tuple[str, ...]) -> list[str]:
    """Banned strings in the continuation, counting those that start in the prompt's end."""
    return [b for b in banned if b in prompt[len(prompt) - len(b) + 1 :] + text]


WORDS = ("the=3", " =3", "cat=3")  # a bias makes the banned strings likely without the ban


@pytest.mark.parametrize(
    "kind, prompt, bias, banned",
    [
        ("char", "th", ("a=3", "e=3", " =3"), ("aa", "e a", "he", " e ")),
        ("word", "the", WORDS, ("e c", "t t", "ethe", "at c")),
        ("bpe", "the", ("the=3", " =6", "cat=3"), ("e c", "t t", "ethe", "at c")),
    ],
)
def test_banned_strings_never_appear_even_across_tokens(
    kind: str, prompt: str, bias: tuple[str, ...], banned: tuple[str, ...]
) -> None:
    model, tok = _model(kind)
    free = SamplingConfig(temperature=1.5, logit_bias=bias)
    held = SamplingConfig(temperature=1.5, logit_bias=bias, ban_strings=banned)
    count = 24
    without = generate(model, tok, prompt, length=60, sampling=free, num_samples=count, seed=1)
    assert {b for s in without for b in _banned_in(prompt, s.text, banned)} == set(banned)
    for sample in generate(model, tok, prompt, length=60, sampling=held, num_samples=count, seed=1):
        assert not _banned_in(prompt, sample.text, banned), sample.text
    greedy = SamplingConfig(temperature=0, ban_strings=banned)
    (cold,) = generate(model, tok, prompt, length=60, sampling=greedy)
    assert cold.text
    assert not _banned_in(prompt, cold.text, banned)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_a_lipogram_and_a_regex_with_bans(kind: str) -> None:
    model, tok = _model(kind)
    cfg = SamplingConfig(temperature=1.5, ban_chars="eE")
    for sample in generate(model, tok, "", length=50, sampling=cfg, num_samples=8, seed=2):
        assert "e" not in sample.text and "E" not in sample.text and sample.text
    if kind != "word":  # with the word vocabulary no short word holds no "e" and fits [a-z]
        pattern = r"[a-z ]{5,20}\."
        both = SamplingConfig(temperature=1.5, regex=pattern, ban_chars="o", ban_strings=("a ",))
        for sample in generate(model, tok, "", length=40, sampling=both, num_samples=8, seed=2):
            assert re.fullmatch(pattern, sample.text)
            assert "o" not in sample.text and "a " not in sample.text


def test_banning_every_token_is_an_error() -> None:
    model, tok = _model("char")
    with pytest.raises(SamplingError, match="every token") as err:
        generate(model, tok, "", length=5, sampling=SamplingConfig(ban_chars=TEXT))
    _one_line(err)


def test_logit_bias_shifts_the_named_token() -> None:
    model, tok = _model("char")
    (pushed,) = generate(
        model, tok, "", length=20, sampling=SamplingConfig(temperature=0, logit_bias=("z=100",))
    )
    assert pushed.text == "z" * 20
    chain = SamplingChain(SamplingConfig(logit_bias=("==-2.5",)), vocab=["a", "b", "="])
    out = chain.rules[0](torch.zeros((1, 3)), torch.zeros((1, 0), dtype=torch.long))
    assert out.tolist() == [[0.0, 0.0, -2.5]]


def test_constraints_act_in_the_first_stage_so_truncation_counts_allowed_mass() -> None:
    vocab = ["a", "b", "c", "d"]
    logits = torch.tensor([[5.0, 4.0, 0.0, 0.0]])
    cfg = SamplingConfig(top_p=0.5, ban_chars="a")
    chain = SamplingChain(cfg, vocab=vocab)
    kept = chain.logprobs(logits, torch.zeros((1, 0), dtype=torch.long)).exp()
    assert kept[0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])  # b alone reaches the nucleus
    assert [rule.stage for rule in chain.rules] == [1, 3]  # the ban, then top-p


# --------------------------------------------------------------------------- the faces
def test_the_server_takes_the_same_fields(trained_run: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from chargen.checkpoint import load_run
    from chargen.server.app import ServerLimits, create_app

    pattern = r"[a-z]{2,6} (?:sees|likes) [a-z ]{3,12}\.\n"
    body = {"prompt": "", "length": 60, "seed": 4, "regex": pattern, "ban_chars": "q"}
    with TestClient(create_app(trained_run, ServerLimits(max_length=500))) as client:
        data = client.post("/v1/generate", json=body).json()
        assert re.fullmatch(pattern, data["text"]), data
        assert data["stop_reason"] == "regex" and data["matched"] is True
        _, tok, model = load_run(trained_run)
        cfg = SamplingConfig(regex=pattern, ban_chars="q")
        (expected,) = generate(model, tok, "", length=60, sampling=cfg, seed=4)
        assert data["text"] == expected.text
        short = client.post("/v1/generate", json={**body, "length": 3}).json()
        assert short["stop_reason"] == "length" and short["matched"] is False
        banned = {"prompt": "the", "length": 80, "seed": 1, "ban_strings": ["e ", "the"]}
        text = client.post("/v1/generate", json=banned).json()["text"]
        assert "e " not in "e" + text and "the" not in "he" + text
        stream = client.post("/v1/generate", json={**body, "stream": True}).text
        assert '"stop_reason": "regex"' in stream and '"matched": true' in stream
        bad = client.post("/v1/generate", json={"regex": r"(a)\1"})
        assert bad.status_code == 422 and "backreference" in bad.json()["detail"]
        plain = client.post("/v1/generate", json={"length": 5}).json()
        assert plain["matched"] is None


def test_the_command_line(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shape = r"[a-z]{4} [a-z]{2,5}\n"  # the corpus has no digits for a date
    args = ["generate", str(trained_run), "--seed", "1", "--length", "40"]
    assert cli_main([*args, "--regex", shape, "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^[a-z]{4} [a-z]{2,5}$", out, flags=re.M)) == 2
    assert cli_main([*args, "--regex", r"\d+"]) == 2  # before any output
    captured = capsys.readouterr()
    assert not captured.out and "no token of the model's vocabulary" in captured.err
    assert cli_main([*args, "--ban-chars", r"e\n", "--ban-strings", "th", "a\\x20"]) == 0
    text = capsys.readouterr().out.split("\n", 1)[0]
    assert not {"e", "\n"} & set(text) and "th" not in text and "a " not in text
    assert cli_main([*args, "--regex", r"[a-z ]{5,9}\.", "--length", "4"]) == 0
    assert "before completing --regex" in capsys.readouterr().err
    assert cli_main([*args, "--regex", r"\bthe"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and r"\b" in err
    assert cli_main([*args, "--beams", "3", "--regex", r"(?:the|a) [a-z]{1,6}\."]) == 0
    assert re.fullmatch(r"(?:the|a) [a-z]{1,6}\.\n", capsys.readouterr().out)
