"""The HTTP API: generation (JSON and server-sent events), scoring, limits and safe defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from chargen.checkpoint import load_run  # noqa: E402
from chargen.generate import generate  # noqa: E402
from chargen.sampling import SamplingConfig  # noqa: E402
from chargen.server.app import ServerLimits, create_app  # noqa: E402


@pytest.fixture
def client(trained_run: Path):
    with TestClient(
        create_app(trained_run, ServerLimits(max_length=500, max_body_bytes=4096))
    ) as c:
        yield c


def _sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_health_model_page_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["vocab_size"] > 10 and info["config"]["model"]["family"] == "lstm"
    assert any(m["kind"] == "eval" for m in info["metrics"])
    page = client.get("/")
    assert page.status_code == 200 and "chargen playground" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("app.js", "style.css"):
        body = client.get(f"/static/{asset}").text
        assert "https://" not in body and "http://" not in body
    assert client.get("/static/..%2F..%2Fapp.py").status_code == 404
    assert client.get("/openapi.json").json()["paths"]["/v1/generate"]
    assert client.get("/docs").status_code == 200


def test_generate_equals_the_command_line(client: TestClient, trained_run: Path) -> None:
    body = {"prompt": "the ", "length": 40, "temperature": 0.8, "top_k": 10, "seed": 7}
    res = client.post("/v1/generate", json=body)
    assert res.status_code == 200, res.text
    data = res.json()
    _, tok, model = load_run(trained_run)
    (expected,) = generate(
        model, tok, "the ", length=40, sampling=SamplingConfig(temperature=0.8, top_k=10), seed=7
    )
    assert data["text"] == expected.text
    assert [t["id"] for t in data["tokens"]] == expected.tokens
    assert data["stop_reason"] == "length"
    assert all(t["logprob"] <= 0 and t["entropy"] >= 0 for t in data["tokens"])


def test_streaming_events(client: TestClient) -> None:
    body = {"prompt": "a dog ", "length": 25, "seed": 3, "stream": True}
    with client.stream("POST", "/v1/generate", json=body) as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        events = _sse(res.read().decode())
    tokens = [e for kind, e in events if kind == "token"]
    kind, done = events[-1]
    assert kind == "done" and len(tokens) == 25 == done["tokens"]
    assert "".join(t["token"] for t in tokens) == done["text"]
    plain = client.post("/v1/generate", json={**body, "stream": False}).json()
    assert plain["text"] == done["text"]


def test_stop_sequences(client: TestClient) -> None:
    free = client.post("/v1/generate", json={"prompt": "the ", "length": 200, "seed": 1}).json()[
        "text"
    ]
    stop = free[10:12]
    cut = client.post(
        "/v1/generate", json={"prompt": "the ", "length": 200, "seed": 1, "stop": [stop]}
    ).json()
    assert cut["stop_reason"] == "stop" and cut["text"] == free[: free.index(stop)]


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"temperature": -1}, "--temperature"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_k": 0}, "--top-k"),
        ({"min_p": 2}, "--min-p"),
        ({"length": 501}, "at most 500"),
        ({"length": -1}, "length"),
        ({"prompt": "☃☃"}, "vocabulary"),
    ],
)
def test_bad_requests_are_422_with_one_message(client: TestClient, body: dict, needle: str) -> None:
    res = client.post("/v1/generate", json=body)
    assert res.status_code == 422
    assert needle in json.dumps(res.json()["detail"])


def test_request_size_limit(client: TestClient) -> None:
    res = client.post("/v1/generate", json={"prompt": "x" * 10_000})
    assert res.status_code == 413


def test_score_and_distribution(client: TestClient) -> None:
    scored = client.post("/v1/score", json={"text": "the cat sees the moon.\n"}).json()
    assert scored["chars"] == 23 and 0 < scored["bits_per_char"] < 8
    assert len(scored["tokens"]) == 23
    dist = client.post("/v1/distribution", json={"prompt": "the c"}).json()
    total = sum(2.718281828459045**lp for lp in dist["logprobs"])
    assert total == pytest.approx(1.0, abs=1e-4)


def test_no_cors_unless_enabled(trained_run: Path) -> None:
    with TestClient(create_app(trained_run)) as plain:
        res = plain.options(
            "/v1/generate",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in res.headers
    with TestClient(create_app(trained_run, cors_origins=["http://ok.example"])) as open_:
        res = open_.get("/healthz", headers={"Origin": "http://ok.example"})
        assert res.headers["access-control-allow-origin"] == "http://ok.example"


def test_queue_full_is_429(trained_run: Path) -> None:
    """On a real server: TestClient's streams are not reliably in flight."""
    import time

    import httpx

    from tests.serving import running_server

    limits = ServerLimits(max_queue=1, max_length=1_000_000)
    with running_server(trained_run, limits) as url, httpx.Client(base_url=url, timeout=30) as c:
        with c.stream("POST", "/v1/generate", json={"length": 1_000_000, "stream": True}) as first:
            lines = first.iter_lines()  # keep it: a dropped iterator closes the connection
            assert next(lines).startswith("event:")  # the first request is in flight
            assert c.post("/v1/generate", json={"length": 5}).status_code == 429
        # the abandoned stream is retired: capacity comes back
        for _ in range(500):
            if c.post("/v1/generate", json={"length": 5}).status_code == 200:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("capacity never came back after the stream was abandoned")


def test_requests_in_flight_share_model_steps(trained_run: Path) -> None:
    import concurrent.futures

    app = create_app(trained_run)
    with TestClient(app) as c:
        before = app.state.batcher.steps
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(
                    lambda s: c.post("/v1/generate", json={"length": 100, "seed": s}).json(),
                    range(8),
                )
            )
        steps = app.state.batcher.steps - before
    assert all(len(r["tokens"]) == 100 for r in results)
    assert steps < 8 * 100 * 0.6  # batched: far fewer model steps than tokens


def test_timeout_ends_a_request(trained_run: Path) -> None:
    with TestClient(
        create_app(trained_run, ServerLimits(timeout_s=0.05, max_length=1_000_000))
    ) as c:
        data = c.post("/v1/generate", json={"length": 1_000_000}).json()
    assert data["stop_reason"] == "timeout" and len(data["tokens"]) < 1_000_000


def _finite_json(text: str) -> dict:
    """The body parsed, refusing NaN and Infinity (not JSON; a browser's JSON.parse fails)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a JSON answer")

    return json.loads(text, parse_constant=refuse)


def test_distribution_xray_ends_with_what_generate_draws_from(
    client: TestClient, trained_run: Path
) -> None:
    import torch

    from chargen.chain import SamplingChain
    from chargen.generate import token_strings
    from chargen.inspect_next import next_logits

    settings = {"temperature": 0.8, "top_k": 5, "repetition_penalty": 1.3}
    res = client.post("/v1/distribution", json={"prompt": "the c", **settings, "xray_top": 50})
    assert res.status_code == 200, res.text
    dist = _finite_json(res.text)
    labels = [s["label"] for s in dist["stages"]]
    assert labels[0] == "model" and len(labels) == 4
    assert labels[1].startswith("repetition penalty 1.3") and labels[2] == "temperature 0.8"
    assert labels[3] == "top k 5"
    # the first stage is the model at T = 1, as tokens / logprobs (kept for compatibility) say
    model = dist["stages"][0]
    assert model["tokens"] == dist["tokens"][:50]
    assert model["logprobs"] == pytest.approx(dist["logprobs"][:50], abs=1e-6)
    # the last is the chain's own distribution (the prompt is the history the penalties read)
    _, tok, lm = load_run(trained_run)
    ids, logits = next_logits(lm, tok, "the c")
    cfg = SamplingConfig(temperature=0.8, top_k=5, repetition_penalty=1.3)
    expected = SamplingChain(cfg, vocab=token_strings(tok)).logprobs(
        logits, torch.tensor([ids], dtype=torch.long)
    )[0]
    last = dist["stages"][-1]
    assert last["kept"] == 5 and len(last["tokens"]) == 5
    for token, lp in zip(last["tokens"], last["logprobs"], strict=True):
        assert lp == pytest.approx(float(expected[tok.encode(token)[0]]), abs=1e-5)
    assert sum(2.718281828459045**lp for lp in last["logprobs"]) == pytest.approx(1, abs=1e-5)
    assert last["entropy_bits"] < model["entropy_bits"]
    # what /v1/generate draws comes from it, with the log-probability the X-ray gives
    for seed in range(6):
        drawn = client.post(
            "/v1/generate", json={"prompt": "the c", "length": 1, "seed": seed, **settings}
        ).json()["tokens"][0]
        assert drawn["token"] in last["tokens"]
        shown = last["logprobs"][last["tokens"].index(drawn["token"])]
        assert drawn["logprob"] == pytest.approx(shown, abs=1e-5)


def test_distribution_top_k_1_is_one_hot_on_the_greedy_token(client: TestClient) -> None:
    for extra in ({"top_k": 1}, {"temperature": 0}):
        dist = client.post("/v1/distribution", json={"prompt": "a dog ", **extra}).json()
        last = dist["stages"][-1]
        assert last["tokens"] == [dist["tokens"][0]] and last["logprobs"] == [0.0]
        assert last["kept"] == 1 and last["entropy_bits"] == 0.0
        greedy = client.post(
            "/v1/generate", json={"prompt": "a dog ", "length": 1, "seed": 5, **extra}
        ).json()
        assert greedy["text"] == dist["tokens"][0]
    plain = client.post("/v1/distribution", json={"prompt": "a dog "}).json()
    assert [s["label"] for s in plain["stages"]] == ["model"]  # no rule: drawn from the model


def test_distribution_leaves_out_what_the_rules_rule_out(client: TestClient) -> None:
    res = client.post(
        "/v1/distribution",
        json={"prompt": "the ", "ban_chars": "aeiou", "logit_bias": ["t=-100"], "xray_top": 100},
    )
    dist = _finite_json(res.text)  # no -inf, no NaN
    last = dist["stages"][-1]
    assert not set("aeiou") & set("".join(last["tokens"]))  # banned: left out
    banned = [t for t in dist["tokens"] if set(t) & set("aeiou")]
    assert last["kept"] == len(last["tokens"]) == len(dist["tokens"]) - len(banned) > 0
    assert last["tokens"][-1] == "t"  # a bias of -100 leaves it last, not out


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"bogus": 1}, "bogus"),
        ({"stop": ["x"]}, "stop"),  # a field of /v1/generate that is not a sampling rule
        ({"top_p": 2}, "--top-p"),
        ({"temperature": -1}, "--temperature"),
        ({"xray_top": 0}, "xray_top"),
        ({"regex": "("}, "--regex"),
        ({"mirostat_tau": 3, "top_k": 5}, "--mirostat-tau"),
        ({"prompt": "☃☃"}, "vocabulary"),
    ],
)
def test_distribution_refuses_bad_input_in_one_line(
    client: TestClient, body: dict, needle: str
) -> None:
    res = client.post("/v1/distribution", json=body)
    assert res.status_code == 422
    detail = res.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and needle in detail
