"""``POST /v1/beams``: the command line's beam search, served, with one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from chargen.checkpoint import load_run  # noqa: E402
from chargen.generate import beam_generate  # noqa: E402
from chargen.sampling import SamplingConfig  # noqa: E402
from chargen.server.app import ServerLimits, create_app  # noqa: E402


@pytest.fixture
def client(trained_run: Path):
    with TestClient(create_app(trained_run, ServerLimits(max_length=200))) as c:
        yield c


@pytest.mark.parametrize(
    "body, cfg",
    [
        ({"beams": 3, "length": 12}, SamplingConfig()),
        ({"beams": 5, "length": 9, "length_penalty": 0.5, "top_k": 4}, SamplingConfig(top_k=4)),
        (
            {"beams": 2, "length": 20, "regex": "[a-z]+ [a-z]+\\."},
            SamplingConfig(regex="[a-z]+ [a-z]+\\."),
        ),
    ],
)
def test_beams_equal_the_command_line(
    client: TestClient, trained_run: Path, body: dict, cfg: SamplingConfig
) -> None:
    res = client.post("/v1/beams", json={"prompt": "the ", **body})
    assert res.status_code == 200, res.text
    got = res.json()["beams"]
    _, tok, model = load_run(trained_run)
    want = beam_generate(
        model,
        tok,
        "the ",
        beams=body["beams"],
        length=body["length"],
        length_penalty=body.get("length_penalty", 1.0),
        sampling=cfg,
    )
    assert [b["text"] for b in got] == [s.text for s in want]
    assert [b["score"] for b in got] == pytest.approx([s.logprobs[0] for s in want])
    assert all(b["tokens"] == len(s.tokens) for b, s in zip(got, want, strict=True))
    assert got == sorted(got, key=lambda b: -b["score"])  # best first


@pytest.mark.parametrize(
    "raw, needle",
    [
        ('{"beams": 0}', "beams"),
        ('{"beams": 17}', "beams"),
        ('{"length": 201}', "length must be at most 200"),
        ('{"length_penalty": NaN}', "length_penalty"),
        ('{"top_k": -1}', "top-k"),
        ('{"prompt": "\\ud800"}', "surrogate"),
        ('{"regex": "(?=a)b"}', "regex"),
        ('{"wat": 1}', "wat"),
    ],
)
def test_bad_beam_requests_are_one_line_4xx(client: TestClient, raw: str, needle: str) -> None:
    res = client.post("/v1/beams", content=raw, headers={"content-type": "application/json"})
    assert 400 <= res.status_code < 500, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and needle in detail, detail
