"""The files of a run folder and its ``config.json`` (``RunConfig``), without torch: the
command line's plain path (``lite.py``) reads a run with the same checks as ``checkpoint``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chargen.atomic import loads_bounded, read_regular
from chargen.config import RUN_FORMAT as RUN_FORMAT  # importable from here, as before
from chargen.config import RUN_VERSION as RUN_VERSION
from chargen.config import RunConfig
from chargen.errors import CheckpointError

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
MAX_JSON_BYTES = 16 << 20  # config.json is a few KB


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


def weights_file(run: Path, which: str = "best") -> Path:
    """The weights ``which`` (``best`` | ``last``) names in ``run``: ``best.safetensors`` when
    asked for and present (no evaluation has happened yet otherwise), else the last weights."""
    return run / (BEST if which == "best" and (run / BEST).exists() else WEIGHTS)
