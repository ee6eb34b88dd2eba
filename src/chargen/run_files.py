"""The files of a run folder and the format of its ``config.json``, without torch."""

from __future__ import annotations

RUN_FORMAT = "chargen-run"
RUN_VERSION = 1
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
MAX_JSON_BYTES = 16 << 20  # config.json is a few KB
