"""Int8 weights for ``chargen export --quantize int8`` (see ``export_onnx.py``).

``quantize_rows`` rounds a matrix to int8 with one float32 scale per row (what the graph
stores); ``rounded_model`` is the model with those rounded values, the reference the int8
graph is checked against.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from chargen.models import LanguageModel


def quantize_rows(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row of a matrix: (q int8 (R, C), scale float32 (R,)), ``value ~
    scale * q`` with ``scale = max |row| / 127`` (1 for a row of zeros)."""
    top = np.abs(value).max(axis=1)
    scale = np.where(top > 0, top / 127, 1).astype(np.float32)
    q = np.clip(np.rint(value / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def rounded_model(model: LanguageModel, rounded: dict[str, tuple[bool, np.ndarray]]) -> Any:
    """A copy of ``model`` whose matrices hold the values an int8 graph computes with."""
    twin = copy.deepcopy(model)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for name, (transposed, value) in rounded.items():
            params[name].copy_(torch.from_numpy(value.T if transposed else value))
    return twin
