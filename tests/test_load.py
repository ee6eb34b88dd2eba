"""A bounded load test: 64 concurrent streaming clients on loopback for 20 s, none may fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from serve_load import format_report, run_load  # noqa: E402

from tests.serving import running_server  # noqa: E402


def test_64_streaming_clients_for_20_seconds(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_server(trained_run) as url:
        result = run_load(url, clients=64, seconds=20.0, length=50)
    with capsys.disabled():
        print("\nload test: " + format_report(result))
    assert result["failures"] == 0, result["failure_examples"]
    assert result["requests"] >= 64
    assert result["p99_s"] >= result["p50_s"] > 0
