"""The files of a run folder and its ``config.json`` (``RunConfig``), without torch: the
command line's plain path (``lite.py``) reads a run with the same checks as ``checkpoint``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen import __version__
from chargen.atomic import loads_bounded, read_regular
from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.errors import ChargenError, CheckpointError

RUN_FORMAT = "chargen-run"
RUN_VERSION = 1
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
MAX_JSON_BYTES = 16 << 20  # config.json is a few KB


@dataclass
class RunConfig:
    """The three configurations of a run, as stored in ``config.json``; with ``--preset auto``
    also what it chose and why (``auto``: a record for people and benchmarks, never read back
    into a setting)."""

    model: ModelConfig
    train: TrainConfig
    data: DataConfig
    auto: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "chargen_version": __version__,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
        }
        if self.auto is not None:
            out["auto"] = self.auto
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = CONFIG) -> RunConfig:
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise CheckpointError(f"{where}: not a chargen run configuration")
        version = data.get("version")
        if version != RUN_VERSION:
            raise CheckpointError(
                f"{where}: run format version {version!r} is not supported by this chargen "
                f"(reads version {RUN_VERSION}); use the chargen version that wrote it"
            )
        try:
            return cls(
                ModelConfig.from_dict(data["model"]).validate(),
                TrainConfig.from_dict(data["train"]).validate(),
                DataConfig.from_dict(data["data"]).validate(),
                data["auto"] if isinstance(data.get("auto"), dict) else None,
            )
        except KeyError as exc:
            raise CheckpointError(f"{where}: missing section {exc.args[0]!r}") from None
        except (ChargenError, TypeError) as exc:
            raise CheckpointError(f"{where}: {exc}") from None


def load_config(run: Path) -> RunConfig:
    """The run's ``config.json``, every section validated; CheckpointError otherwise."""
    return RunConfig.from_dict(_read_json(run / CONFIG), str(run / CONFIG))


def _read_json(path: Path) -> Any:
    """Parsed JSON of a regular file of at most ``MAX_JSON_BYTES``; CheckpointError otherwise."""
    if not os.path.lexists(path):
        raise CheckpointError(f"{path}: file not found (is this a chargen run folder?)")
    raw = read_regular(path, CheckpointError, MAX_JSON_BYTES)
    try:
        return loads_bounded(raw.decode("utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable or corrupt JSON ({exc})") from None
