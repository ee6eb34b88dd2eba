"""The step graph's interface: its inputs and outputs (``Port``) and the digests in its metadata.

``state_ports`` names the state inputs of a run's graph in order (``input_ports`` adds ``ids``,
``output_ports`` gives ``logits`` and each state's ``*_out``), ``onnx_state`` turns chargen's
state into those inputs, and ``vocab_digest`` / ``weights_digest`` are what the graph's
``chargen.vocab_sha256`` and ``chargen.weights_sha256`` hold (``export_onnx.py`` writes them,
``onnx_engine.py`` checks them). Every name here is importable from ``export_onnx`` too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from chargen.models import LanguageModel, State, TransformerLanguageModel
from chargen.tokenizer import Tokenizer


@dataclass(frozen=True)
class Port:
    """One graph input or output: name, shape (``"batch"`` for the dynamic batch), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # float32 | int64


def state_ports(config: Any) -> list[Port]:
    """The state inputs of a run's step graph, in order (``config``: its ModelConfig)."""
    layers, width = config.num_layers, config.hidden_size
    if config.family in ("lstm", "gru"):
        names = ("h", "c") if config.family == "lstm" else ("h",)
        return [Port(n, (layers, "batch", width), "float32") for n in names]
    heads, ctx = config.num_heads, config.context_size
    pos = Port("pos", (1, "batch"), "int64")
    if config.positions == "rotary":
        cache = (layers, "batch", heads, ctx, width // heads)
        return [Port("k", cache, "float32"), Port("v", cache, "float32"), pos]
    return [pos, Port("tokens", (1, "batch", ctx), "int64")]


def input_ports(config: Any) -> list[Port]:
    return [Port("ids", ("batch",), "int64"), *state_ports(config)]


def output_ports(config: Any) -> list[Port]:
    logits = Port("logits", ("batch", config.vocab_size), "float32")
    return [logits, *(Port(p.name + "_out", p.shape, p.dtype) for p in state_ports(config))]


def onnx_state(model: LanguageModel, state: State) -> State:
    """chargen's state of ``model`` as the graph's state inputs (learned positions: pos, tokens)."""
    if isinstance(model, TransformerLanguageModel) and not model.rotary:
        return (state[2], state[3])
    return state


def vocab_digest(tokenizer: Tokenizer) -> str:
    """sha256 of the vocabulary (its tokens in id order, as JSON)."""
    return hashlib.sha256(json.dumps(tokenizer.vocab, ensure_ascii=True).encode()).hexdigest()


def weights_digest(model: LanguageModel) -> str:
    """sha256 over the model's parameters (names and float32 bytes, in order)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
