"""One per-token record for every face: ``chargen generate --format jsonl`` and the server's
token events carry the same ``TokenRecord`` for the same run, prompt, sampling and seed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from chargen.cli import main
from chargen.generate import Sample
from chargen.token_record import TokenRecord, token_records

RECORD_KEYS = ["index", "id", "token", "logprob", "entropy"]
SAMPLING = {"temperature": 0.8, "top_k": 10}
PROMPT, LENGTH, SEED = "the ", 30, 11


def test_records_of_a_sample_follow_its_tokens_in_order() -> None:
    sample = Sample(
        "ab\n",
        seed=3,
        tokens=[4, 5, 1],
        pieces=["a", "b", "\n"],
        logprobs=[-0.5, -1.25, -2.0],
        entropies=[1.0, 0.75, 0.0],
    )
    assert [r.to_dict() for r in token_records(sample)] == [
        {"index": 0, "id": 4, "token": "a", "logprob": -0.5, "entropy": 1.0},
        {"index": 1, "id": 5, "token": "b", "logprob": -1.25, "entropy": 0.75},
        {"index": 2, "id": 1, "token": "\n", "logprob": -2.0, "entropy": 0.0},
    ]
    assert token_records(Sample("", seed=0)) == []


def test_to_dict_is_plain_json_whatever_the_numbers_were_made_of() -> None:
    record = TokenRecord(np.int64(2), np.int32(7), "x", np.float32(-0.25), np.float64(1.5))
    data = record.to_dict()
    assert list(data) == RECORD_KEYS == [f.name for f in dataclasses.fields(TokenRecord)]
    assert [type(v) for v in data.values()] == [int, int, str, float, float]
    assert json.loads(json.dumps(data)) == {
        "index": 2,
        "id": 7,
        "token": "x",
        "logprob": -0.25,
        "entropy": 1.5,
    }


def test_a_sample_with_uneven_details_is_refused() -> None:
    sample = Sample("ab", seed=0, tokens=[1, 2], pieces=["a", "b"], logprobs=[-1.0], entropies=[])
    with pytest.raises(ValueError):
        token_records(sample)


def _cli_records(run: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    flags = ["--temperature", str(SAMPLING["temperature"]), "--top-k", str(SAMPLING["top_k"])]
    args = [str(run), "--prompt", PROMPT, "--length", str(LENGTH), "--seed", str(SEED), *flags]
    assert main(["generate", *args, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for row in rows:  # the sample's own fields, then its token's record
        assert list(row)[:3] == ["sample", "seed", "temperature"]
        assert (row.pop("sample"), row.pop("seed"), row.pop("temperature")) == (0, SEED, 0.8)
    return rows


def test_cli_jsonl_and_server_token_events_carry_the_same_records(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
    from fastapi.testclient import TestClient

    from chargen.server.app import create_app
    from tests.test_server import _sse

    cli = _cli_records(trained_run, capsys)
    assert len(cli) == LENGTH and all(list(row) == RECORD_KEYS for row in cli)
    body = {"prompt": PROMPT, "length": LENGTH, "seed": SEED, **SAMPLING}
    with TestClient(create_app(trained_run, follow_s=None)) as client:
        with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as res:
            events = _sse(res.read().decode())
        plain = client.post("/v1/generate", json=body).json()
    streamed = [data for kind, data in events if kind == "token"]
    assert streamed == cli  # same keys, same values (exact floats), same order of tokens
    assert all(list(event) == RECORD_KEYS for event in streamed)
    # the JSON answer holds each record less its index (its place in the list says it)
    assert plain["tokens"] == [
        {k: row[k] for k in ("token", "id", "logprob", "entropy")} for row in cli
    ]
    assert plain["text"] == "".join(row["token"] for row in cli)
