"""Run folders: atomic files, clear errors on damaged or foreign files, never unpickled."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from chargen import checkpoint as ckpt
from chargen.atomic import atomic_write_bytes
from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.errors import ChargenError, CheckpointError
from chargen.models import build_model


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(vocab_size=20, embed_dim=4, hidden_size=8))


def test_weights_round_trip(tmp_path: Path, model: torch.nn.Module) -> None:
    ckpt.save_weights(tmp_path / "w.safetensors", model, {"step": 3})
    other = build_model(ModelConfig(vocab_size=20, embed_dim=4, hidden_size=8))
    meta = ckpt.load_weights_into(other, tmp_path / "w.safetensors")
    assert json.loads(meta["step"]) == 3
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle", "empty"])
def test_damaged_weights_give_a_clear_error(
    tmp_path: Path, model: torch.nn.Module, damage: str
) -> None:
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, model)
    data = path.read_bytes()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    payload = {
        "truncate": data[: len(data) // 2],
        "garbage": b"\x00" * 64 + b"not a tensor file",
        "pickle": pickle.dumps(Exploit()),
        "empty": b"",
    }[damage]
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="w.safetensors"):
        ckpt.load_weights_into(model, path)
    assert not marker.exists()


def test_weights_of_another_shape_are_refused(tmp_path: Path, model: torch.nn.Module) -> None:
    ckpt.save_weights(tmp_path / "w.safetensors", model)
    bigger = build_model(ModelConfig(vocab_size=21, embed_dim=4, hidden_size=8))
    with pytest.raises(CheckpointError, match="shape"):
        ckpt.load_weights_into(bigger, tmp_path / "w.safetensors")


def test_config_versions(tmp_path: Path) -> None:
    config = ckpt.RunConfig(ModelConfig(vocab_size=5), TrainConfig(), DataConfig(source="x"))
    ckpt.save_config(tmp_path, config)
    assert ckpt.load_config(tmp_path) == config
    data = json.loads((tmp_path / "config.json").read_text())
    data["version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="version 99"):
        ckpt.load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        ckpt.load_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a chargen run"):
        ckpt.load_config(tmp_path)


def test_atomic_write_keeps_the_old_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(ChargenError, match="No space left"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_prepare_run_dir_rules(tmp_path: Path) -> None:
    run = ckpt.prepare_run_dir(tmp_path / "new", resume=False, overwrite=False)
    (run / "config.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="--overwrite"):
        ckpt.prepare_run_dir(run, resume=False, overwrite=False)
    ckpt.prepare_run_dir(run, resume=False, overwrite=True)
    assert not (run / "config.json").exists() and (run / "notes.txt").read_text() == "mine"
    with pytest.raises(CheckpointError, match="nothing to resume"):
        ckpt.prepare_run_dir(run, resume=True, overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a folder"):
        ckpt.prepare_run_dir(tmp_path / "file", resume=False, overwrite=False)
