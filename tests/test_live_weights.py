"""Serving a run that is still training: the server follows each new ``best.safetensors``.

The trainer's atomic write is played by hand (a new file renamed over the old): the served
text then equals the new weights' own generation for the same seed (``chargen.load`` as the
oracle); a damaged file or another run's weights are skipped, said in ``/v1/model``, and the
server goes on with what it has.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import httpx  # noqa: E402

import chargen  # noqa: E402
from chargen import checkpoint as ckpt  # noqa: E402
from chargen.server.app import create_app  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.serving import running_app  # noqa: E402

REQUEST = {"prompt": "the ", "length": 60, "seed": 5}


def replace_atomically(source: Path, target: Path) -> None:
    """What the trainer does: write a new file beside the target, then rename it over."""
    temporary = target.with_name(target.name + ".new")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def weights(url: str) -> dict:
    return httpx.get(f"{url}/v1/model", timeout=30).json()["weights"]


def wait_for(url: str, test, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = weights(url)
        if test(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"the served weights never changed as expected: {info}")


def generated(url: str) -> str:
    res = httpx.post(f"{url}/v1/generate", json=REQUEST, timeout=60)
    assert res.status_code == 200, res.text
    return res.json()["text"]


@pytest.fixture(scope="module")
def runs(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(a copy of the trained run to serve, the same run trained further, another model)."""
    folder = tmp_path_factory.mktemp("live")
    served, ahead = folder / "served", folder / "ahead"
    shutil.copytree(trained_run, served)
    shutil.copytree(trained_run, ahead)
    corpus = ckpt.load_config(trained_run).data.source
    chargen.train(corpus, ahead, steps=80, resume=True)
    other = folder / "other"
    chargen.train(corpus, other, preset="small", steps=5, **{**TINY, "hidden_size": 24})
    return served, ahead, other


def test_a_new_best_is_served_and_a_bad_one_is_skipped(runs: tuple[Path, Path, Path]) -> None:
    served, ahead, other = runs
    new_step = int(ckpt.load_trainer_state(ahead).meta["step"])
    with running_app(create_app(served, follow_s=0.05)) as url:
        first = weights(url)
        assert first["following"] and first["reloads"] == 0 and first["file"] == ckpt.BEST
        before = generated(url)
        assert before == chargen.load(served).generate(**REQUEST)

        replace_atomically(ahead / ckpt.BEST, served / ckpt.BEST)
        info = wait_for(url, lambda w: w["reloads"] == 1)
        best_step = int(ckpt.read_safetensors(ahead / ckpt.BEST)[1]["step"])
        assert info["step"] == best_step and info["skipped"] is None and best_step <= new_step
        after = generated(url)
        assert after == chargen.load(ahead).generate(**REQUEST) != before

        for bad in (b"not a weights file", (other / ckpt.BEST).read_bytes()):
            reloads = weights(url)["reloads"]
            (served / "bad").write_bytes(bad)
            replace_atomically(served / "bad", served / ckpt.BEST)
            info = wait_for(url, lambda w: w["skipped"] is not None)
            assert info["reloads"] == reloads and info["step"] == best_step
            assert len(info["skipped"].splitlines()) == 1
            assert generated(url) == after  # still the last good weights
            replace_atomically(ahead / ckpt.BEST, served / ckpt.BEST)  # good again: no skip
            wait_for(url, lambda w: w["skipped"] is None)


def test_without_following_the_weights_stay(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    served, ahead, _ = runs
    still = tmp_path / "still"
    shutil.copytree(served, still)
    with running_app(create_app(still, follow_s=None)) as url:
        before = generated(url)
        replace_atomically(ahead / ckpt.BEST, still / ckpt.BEST)
        time.sleep(0.5)
        info = weights(url)
        assert not info["following"] and info["reloads"] == 0
        assert generated(url) == before
