"""The OpenAI-compatible routes, through the official ``openai`` client, on a real server.

Most tests talk to a ``chargen serve`` process on a tiny run, as a client would; the hostile
cases that need a hand inside the server (a slowed model step, NaN weights, an injected
failure) run uvicorn in this process (``tests.serving``). No test measures time.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
openai = pytest.importorskip("openai", reason="the test extra's openai client is not installed")
import httpx  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from chargen.checkpoint import load_run  # noqa: E402
from chargen.server import openai_api  # noqa: E402
from chargen.server.app import ServerLimits, create_app  # noqa: E402
from tests.serving import free_port, json_values, nan_copy, running_app  # noqa: E402

MAX_LENGTH = 500


def _one_line(message: Any) -> str:
    """The error line a client reads: one string, one line, no traceback, no path."""
    assert isinstance(message, str), message
    assert "\n" not in message and "Traceback" not in message, message
    assert "/tmp" not in message and "/work" not in message, message
    return message


def _openai_error(res: httpx.Response) -> str:
    """The message of an answer in OpenAI's error shape."""
    body = res.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return _one_line(body["error"]["message"])


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``chargen serve`` on the tiny run, in its own process."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chargen", "serve", str(trained_run), "--port", str(port)]
            + ["--max-length", str(MAX_LENGTH)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"chargen serve did not start: {log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()


def _client(url: str) -> Any:
    """The official client pointed at a chargen server (no key is checked; no retries)."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[Any]:
    with _client(server) as c:
        yield c


def _generate(url: str, **body: Any) -> dict[str, Any]:
    res = httpx.post(f"{url}/v1/generate", json=body, timeout=60)
    assert res.status_code == 200, res.text
    return res.json()


def _distribution(url: str, prompt: str) -> dict[str, float]:
    """The model's next-token log-probabilities after ``prompt`` (T = 1, no rule)."""
    res = httpx.post(f"{url}/v1/distribution", json={"prompt": prompt}, timeout=60)
    assert res.status_code == 200, res.text
    data = res.json()
    return dict(zip(data["tokens"], data["logprobs"], strict=True))


# ------------------------------------------------------------------------------ the models
def test_models_list_names_the_served_run(client: Any, trained_run: Path) -> None:
    (card,) = client.models.list().data
    assert card.id == trained_run.name and card.object == "model"
    assert client.models.retrieve(card.id).id == card.id
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4")
    assert trained_run.name in _one_line(caught.value.body["message"])


# ------------------------------------------------------------------------------ completions
def test_a_completion_equals_generate_with_the_same_settings(
    client: Any, server: str, trained_run: Path
) -> None:
    settings_ = {"temperature": 0.8, "seed": 7}
    out = client.completions.create(
        model="any-name-is-accepted",
        prompt="the ",
        max_tokens=40,
        extra_body={"top_k": 10, "repetition_penalty": 1.1},
        **settings_,
    )
    assert out.id.startswith("cmpl-") and out.object == "text_completion"
    assert out.model == trained_run.name and out.created > 0
    (choice,) = out.choices
    expected = _generate(
        server, prompt="the ", length=40, top_k=10, repetition_penalty=1.1, **settings_
    )
    assert choice.text == expected["text"] and choice.index == 0
    assert choice.finish_reason == "length" and choice.logprobs is None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (4, 40)
    assert out.usage.total_tokens == 44
    again = client.completions.create(
        model="x",
        prompt="the ",
        max_tokens=40,
        extra_body={"top_k": 10, "repetition_penalty": 1.1},
        **settings_,
    )
    assert again.choices[0].text == choice.text  # same seed, same text


def test_without_a_seed_requests_differ(client: Any) -> None:
    texts = {
        client.completions.create(model="x", prompt="a ", max_tokens=60).choices[0].text
        for _ in range(3)
    }
    assert len(texts) > 1


def test_unknown_prompt_characters_are_dropped_with_a_warning(server: str) -> None:
    res = httpx.post(
        f"{server}/v1/completions", json={"prompt": "the ☃ c", "max_tokens": 3}, timeout=30
    )
    assert res.status_code == 200, res.text
    (warning,) = res.json()["warnings"]
    assert "☃" in warning and len(res.json()["choices"][0]["text"]) == 3


def test_streaming_sends_the_same_text_in_chunks(client: Any) -> None:
    kwargs = {"model": "x", "prompt": "a dog ", "max_tokens": 30, "seed": 3}
    plain = client.completions.create(**kwargs)
    chunks = list(
        client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    )
    *parts, usage = chunks
    assert usage.choices == [] and usage.usage.completion_tokens == 30
    assert len({c.id for c in chunks}) == 1 and all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in parts) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in parts][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in parts[:-1])


def test_n_choices_and_a_list_of_prompts(client: Any, server: str) -> None:
    out = client.completions.create(model="x", prompt="the ", max_tokens=25, n=3, seed=5)
    assert [c.index for c in out.choices] == [0, 1, 2]
    for j, choice in enumerate(out.choices):  # choice j uses seed + j
        assert choice.text == _generate(server, prompt="the ", length=25, seed=5 + j)["text"]
    assert out.usage.prompt_tokens == 4 and out.usage.completion_tokens == 75
    both = client.completions.create(model="x", prompt=["the ", "a "], max_tokens=10, n=2, seed=1)
    assert [c.index for c in both.choices] == [0, 1, 2, 3]
    assert both.choices[3].text == _generate(server, prompt="a ", length=10, seed=2)["text"]
    assert both.usage.prompt_tokens == 6
    streamed: dict[int, str] = {}
    for chunk in client.completions.create(
        model="x", prompt=["the ", "a "], max_tokens=10, n=2, seed=1, stream=True
    ):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed == {c.index: c.text for c in both.choices}


def test_logprobs_are_those_of_the_distribution_sampled(client: Any, server: str) -> None:
    out = client.completions.create(
        model="x", prompt="the c", max_tokens=12, temperature=1.0, seed=2, logprobs=5
    )
    (choice,) = out.choices
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.tokens) == 12
    for k, (token, value, top, offset) in enumerate(
        zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset, strict=True)
    ):
        assert choice.text[offset : offset + len(token)] == token
        assert value <= 0 and 0 < len(top) <= 5
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-6
        assert list(top.values()) == sorted(top.values(), reverse=True)
        if token in top:
            assert top[token] == pytest.approx(value, abs=1e-6)
        if k < 4:  # T = 1 and no rule: the model's own distribution
            model = _distribution(server, "the c" + choice.text[:offset])
            assert value == pytest.approx(model[token], abs=1e-4)
            for alt, v in top.items():
                assert v == pytest.approx(model[alt], abs=1e-4)


def test_logprobs_of_n_choices_are_each_their_own(client: Any, server: str) -> None:
    """Choices of one request share their settings: each still gets its own alternatives."""
    out = client.completions.create(
        model="x", prompt="the c", max_tokens=6, seed=11, n=3, logprobs=3
    )
    assert len({c.text for c in out.choices}) > 1
    for choice in out.choices:
        lp = choice.logprobs
        assert len(lp.top_logprobs) == len(lp.tokens) == 6
        for k in range(3):
            model = _distribution(server, "the c" + choice.text[:k])
            assert lp.token_logprobs[k] == pytest.approx(model[lp.tokens[k]], abs=1e-4)
            best = sorted(model.values(), reverse=True)[:3]
            assert list(lp.top_logprobs[k].values()) == pytest.approx(best, abs=1e-4)


def test_logprobs_follow_the_sampling_rules(client: Any, server: str) -> None:
    """With top_k 3 the distribution drawn from holds three tokens: renormalised."""
    out = client.completions.create(
        model="x", prompt="the c", max_tokens=1, seed=2, logprobs=5, extra_body={"top_k": 3}
    )
    (top,) = out.choices[0].logprobs.top_logprobs
    assert len(top) == 3 and sum(math.exp(v) for v in top.values()) == pytest.approx(1, abs=1e-5)
    model = _distribution(server, "the c")
    kept = sorted(model.items(), key=lambda kv: -kv[1])[:3]
    norm = math.log(sum(math.exp(v) for _, v in kept))
    assert top == pytest.approx({t: v - norm for t, v in kept}, abs=1e-4)
    greedy = client.completions.create(
        model="x", prompt="the c", max_tokens=8, temperature=0, logprobs=2, seed=1
    )
    other = client.completions.create(
        model="x", prompt="the c", max_tokens=8, temperature=0, seed=9
    )
    assert greedy.choices[0].text == other.choices[0].text  # greedy: the seed changes nothing
    assert greedy.choices[0].logprobs.token_logprobs == [0.0] * 8  # drawn from a one-hot
    first = greedy.choices[0].logprobs.tokens[0]
    assert first == max(model, key=model.__getitem__)


def test_echo_with_logprobs_scores_the_prompt(client: Any, server: str) -> None:
    """lm-evaluation-harness asks this to score a text: echo, logprobs, max_tokens 0."""
    prompt = "the cat sees"
    out = client.completions.create(model="x", prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    (choice,) = out.choices
    assert choice.text == prompt and choice.finish_reason == "length"
    lp = choice.logprobs
    assert lp.tokens == list(prompt) and lp.text_offset == list(range(len(prompt)))
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for k in (1, 5, len(prompt) - 1):
        model = _distribution(server, prompt[:k])
        assert lp.token_logprobs[k] == pytest.approx(model[prompt[k]], abs=1e-4)
        (best,) = lp.top_logprobs[k].items()
        assert best[1] == pytest.approx(max(model.values()), abs=1e-4)
    more = client.completions.create(
        model="x", prompt=prompt, max_tokens=5, echo=True, logprobs=0, seed=4
    )
    text = more.choices[0].text
    assert text.startswith(prompt) and len(text) == len(prompt) + 5
    assert more.choices[0].logprobs.text_offset[-1] == len(text) - 1
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="x", prompt=prompt, max_tokens=5, echo=True, seed=4, stream=True
        )
    )
    assert streamed == text


def test_stop_strings_cut_the_text_streamed_or_not(client: Any) -> None:
    kwargs = {"model": "x", "prompt": "the ", "max_tokens": 200, "seed": 1}
    free = client.completions.create(**kwargs).choices[0].text
    stop = free[10:13]
    cut = client.completions.create(stop=[stop, "zzzz"], **kwargs).choices[0]
    assert cut.finish_reason == "stop" and cut.text == free[: free.index(stop)]
    chunks = list(client.completions.create(stop=stop, stream=True, **kwargs))
    assert "".join(c.choices[0].text for c in chunks) == cut.text  # no part of the stop sent
    assert chunks[-1].choices[0].finish_reason == "stop"
    with_lp = client.completions.create(stop=stop, logprobs=1, **kwargs).choices[0]
    assert "".join(with_lp.logprobs.tokens) == cut.text


def test_openai_logit_bias_is_by_token_id(client: Any, trained_run: Path) -> None:
    """Every token biased by -100 but one: that one is drawn, whatever the seed."""
    _, tokenizer, _ = load_run(trained_run)
    down = {str(i): -100 for i in range(tokenizer.vocab_size)}
    for token, seed in ((3, 1), (3, 2), (7, 1)):
        out = client.completions.create(
            model="x", prompt="the ", max_tokens=1, seed=seed, logit_bias={**down, str(token): 0}
        )
        assert out.choices[0].text == tokenizer.decode([token])


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 17}, "at most 16"),
        ({"max_tokens": MAX_LENGTH + 1}, f"max_tokens must be at most {MAX_LENGTH}"),
        ({"logprobs": 21}, "logprobs"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"suffix": "!"}, "suffix"),
        ({"extra_body": {"top_k": "many"}}, "top_k"),
        ({"extra_body": {"min_p": 2}}, "min_p"),
        ({"extra_body": {"temperatur": 0.5}}, "temperatur: Extra inputs are not permitted"),
        ({"extra_body": {"length": 5}}, "max_tokens"),
        ({"prompt": "☃☃"}, "vocabulary"),
        ({"stop": ["x"] * 17}, "at most 16 strings"),
    ],
)
def test_bad_requests_are_bad_request_errors_with_one_line(
    client: Any, kwargs: dict[str, Any], needle: str
) -> None:
    args = {"model": "x", "prompt": "the ", "max_tokens": 5, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(**args)
    error = caught.value.body
    assert needle in _one_line(error["message"]), error
    assert error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):  # refused before any stream begins
        client.completions.create(stream=True, **args)


# ------------------------------------------------------------------------- raw, hostile HTTP
@pytest.mark.parametrize(
    "raw, status",
    [
        (b'{"prompt": ', 400),
        (b"\xff\xfe not json", 400),
        (b"[1, 2]", 400),
        (b"[" * 5_000 + b"]" * 5_000, 400),  # nested past the parser's recursion limit
        (b'{"prompt": "\\ud800"}', 400),  # a lone surrogate
        (b'{"prompt": ["the ", "\\udfff"]}', 400),
        (b'{"stop": "\\ud800"}', 400),
        (b'{"temperature": NaN}', 400),
        (b'{"frequency_penalty": 1e308}', 400),
        (b'{"max_tokens": 1e400}', 400),  # infinity
        (b'{"seed": 18446744073709551616}', 400),
        (b'{"logit_bias": {"0": NaN}}', 400),
        (b'{"n": 0}', 400),
        (b'{"prompt": "' + b"x" * 70_000 + b'"}', 413),
    ],
)
def test_malformed_bodies_are_one_line_openai_errors(server: str, raw: bytes, status: int) -> None:
    res = httpx.post(
        f"{server}/v1/completions",
        content=raw,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert res.status_code == status, res.text
    _openai_error(res)
    assert _generate(server, prompt="the ", length=3)["text"]


def test_wrong_methods_and_paths_answer_in_openai_shape(server: str) -> None:
    res = httpx.get(f"{server}/v1/completions", timeout=30)
    assert res.status_code == 405
    _openai_error(res)
    res = httpx.post(f"{server}/v1/models", json={}, timeout=30)
    assert res.status_code == 405
    _openai_error(res)
    # the other routes keep their own shape
    assert "detail" in httpx.post(f"{server}/v1/generate", json={"n": 2}, timeout=30).json()


def test_a_large_content_length_is_refused_before_reading(server: str) -> None:
    where = urlparse(server)
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Connection: close\r\nContent-Length: 10000000\r\n\r\n"
    )
    with socket.create_connection((where.hostname, where.port), timeout=20) as sock:
        sock.sendall(head.encode() + b"{}")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.decode().partition("\r\n")
    assert status_line.split()[1] == "413"
    body = json.loads(rest.split("\r\n\r\n", 1)[1])
    assert "over 65536 bytes" in _one_line(body["error"]["message"])


# ------------------------------------------------------------ hostile cases, in this process
@pytest.fixture
def slow_app(trained_run: Path) -> Iterator[tuple[Any, str]]:
    """A server whose model step sleeps 10 ms: a 2,000-token request runs for 20 s."""
    app = create_app(trained_run, ServerLimits(max_queue=4))
    stepper = app.state.batcher.stepper
    real = stepper.step

    def slow(last: Any) -> Any:
        time.sleep(0.01)
        return real(last)

    stepper.step = slow
    try:
        with running_app(app) as url:
            yield app, url
    finally:
        stepper.step = real


def _wait_for(condition: Any, tries: int = 500) -> bool:
    for _ in range(tries):
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_clients_that_hang_up_free_their_slots(slow_app: tuple[Any, str]) -> None:
    app, url = slow_app
    batcher = app.state.batcher
    body = json.dumps({"prompt": "the ", "max_tokens": 2000, "n": 2}).encode()
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    where = urlparse(url)
    socks = [socket.create_connection((where.hostname, where.port), timeout=10) for _ in range(2)]
    for sock in socks:
        sock.sendall(head.encode() + body)
    assert _wait_for(lambda: batcher.in_flight == 4)
    with _client(url) as c, pytest.raises(openai.RateLimitError) as caught:
        c.completions.create(model="x", prompt="a", max_tokens=1)  # no slot for one more choice
    assert caught.value.body["type"] == "rate_limit_error"
    _one_line(caught.value.body["message"])
    for sock in socks:
        sock.close()
    assert _wait_for(lambda: batcher.in_flight == 0)  # well before the 20 s they asked for
    with _client(url) as c:
        stream = c.completions.create(
            model="x", prompt="the ", max_tokens=2000, n=3, stream=True, seed=1
        )
        next(iter(stream))
        assert batcher.in_flight == 3
        stream.close()
        assert _wait_for(lambda: batcher.in_flight == 0)
        assert c.completions.create(model="x", prompt="a", max_tokens=2).choices[0].text


def test_more_choices_than_the_queue_holds_is_429(trained_run: Path) -> None:
    app = create_app(trained_run, ServerLimits(max_queue=2))
    with running_app(app) as url, _client(url) as c:
        with pytest.raises(openai.RateLimitError):
            c.completions.create(model="x", prompt="a", max_tokens=1, n=3)
        assert len(c.completions.create(model="x", prompt="a", max_tokens=1, n=2).choices) == 2


@pytest.fixture(scope="module")
def nan_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained run whose head weights hold NaN."""
    return nan_copy(trained_run, tmp_path_factory.mktemp("nan"))


def test_a_failing_generation_is_one_line_and_the_server_goes_on(nan_run: Path) -> None:
    app = create_app(nan_run, ServerLimits(max_queue=4))
    with running_app(app) as url:
        with _client(url) as c:
            for _ in range(2):
                with pytest.raises(openai.InternalServerError) as caught:
                    c.completions.create(model="x", prompt="the ", max_tokens=5, n=2)
                assert "not finite" in _one_line(caught.value.body["message"])
            with pytest.raises(openai.APIError) as streamed:
                list(c.completions.create(model="x", prompt="the ", max_tokens=5, stream=True))
            assert "not finite" in _one_line(streamed.value.message)
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        assert _wait_for(lambda: app.state.batcher.in_flight == 0)


def test_an_unexpected_failure_is_one_line_and_frees_the_slots(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("injected failure at /secret/path")

    monkeypatch.setattr(openai_api, "_score_prompt", broken)
    app = create_app(trained_run)
    with running_app(app) as url:
        res = httpx.post(
            f"{url}/v1/completions",
            json={"prompt": "the ", "echo": True, "logprobs": 1, "n": 2, "max_tokens": 50},
            timeout=30,
        )
        assert res.status_code == 500
        message = _openai_error(res)
        assert "RuntimeError" in message and "secret" not in message
        assert _wait_for(lambda: app.state.batcher.in_flight == 0)
        ok = httpx.post(f"{url}/v1/completions", json={"prompt": "the "}, timeout=30)
        assert ok.status_code == 200 and len(ok.json()["choices"][0]["text"]) == 16


def test_the_time_limit_ends_a_completion(trained_run: Path) -> None:
    app = create_app(trained_run, ServerLimits(timeout_s=0.05, max_length=1_000_000))
    with running_app(app) as url, _client(url) as c:
        out = c.completions.create(model="x", prompt="a", max_tokens=1_000_000)
    (choice,) = out.choices
    assert choice.finish_reason == "length" and out.usage.completion_tokens < 1_000_000


# ------------------------------------------------------------------------------ property
JSON = json_values(20, 3, 8)
FIELDS = st.sampled_from(
    [
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stream_options",
        "stop",
        "seed",
        "logprobs",
        "echo",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "best_of",
        "suffix",
        "top_k",
        "min_p",
    ]
)


@pytest.fixture(scope="module")
def fuzz_server(trained_run: Path) -> Iterator[str]:
    with running_app(create_app(trained_run, ServerLimits(max_length=50))) as url:
        yield url


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=JSON | st.dictionaries(FIELDS, JSON, max_size=6))
def test_random_json_gets_2xx_or_an_openai_4xx(fuzz_server: str, body: Any) -> None:
    res = httpx.post(
        f"{fuzz_server}/v1/completions",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert res.status_code < 500, (body, res.status_code, res.text)
    if res.status_code >= 400:
        _openai_error(res)
    assert httpx.get(f"{fuzz_server}/healthz", timeout=30).status_code == 200
