"""``POST /neurons``: the neuron lab page for a text, served (form or JSON), and its limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from chargen.server.app import create_app  # noqa: E402
from chargen.server.neurons_route import MAX_NEURON_CHARS  # noqa: E402


@pytest.fixture(scope="module")
def client(trained_run: Path):
    with TestClient(create_app(trained_run)) as c:
        yield c


def page_data(html: str) -> dict:
    start = html.index('<script id="data" type="application/json">') + len(
        '<script id="data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_a_form_or_json_text_gets_its_lab_page(client: TestClient) -> None:
    text = "the cat sees the moon.\na dog finds the river.\n"
    for res in (
        client.post("/neurons", data={"text": text}),
        client.post("/neurons", json={"text": text}),
    ):
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
        data = page_data(res.text)
        assert data["text"] == text and data["served"] is True
        assert len(data["units"]) == 2 * 48  # every cell and hidden unit of the LSTM 48
        assert "http://" not in res.text and "https://" not in res.text  # nothing from a CDN


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"data": {"text": ""}}, "text is required"),
        ({"json": {"text": 5}}, "text is required"),
        ({"json": ["text"]}, "text is required"),
        ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, "not a form"),
        ({"data": {"text": "a" * (MAX_NEURON_CHARS + 1)}}, "at most 8,000 characters"),
    ],
)
def test_bad_requests_are_one_line(client: TestClient, kwargs: dict, needle: str) -> None:
    res = client.post("/neurons", **kwargs)
    assert res.status_code in (413, 422), res.text
    detail = res.json()["detail"]
    assert (needle in detail or res.status_code == 413) and "\n" not in detail
