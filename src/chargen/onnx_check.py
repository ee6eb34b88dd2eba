"""The exported graph checked against chargen's own step (see ``export_onnx.py``).

``random_states`` makes a state far from the initial one and ``parity`` runs one step of the
graph from it against ``model.forward``: ``export_onnx`` refuses a graph whose logits differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from chargen.errors import ConfigError
from chargen.models import LanguageModel, RNNLanguageModel, State, TransformerLanguageModel
from chargen.onnx_ports import onnx_state, output_ports, state_ports


def random_states(model: LanguageModel, rows: int, seed: int = 0) -> State:
    """A chargen state of ``rows`` rows far from the initial one, for parity checks.

    RNNs: random ``h`` in (-1, 1) and ``c`` ~ N(0, 2); rotary Transformer: N(0, 1) caches and
    positions in [0, 3C); learned positions: the state after reading random ids of random
    lengths in [0, 3C) (its caches must agree with its tokens).
    """
    gen = torch.Generator().manual_seed(seed)
    state = model.initial_state(rows)
    if isinstance(model, RNNLanguageModel):
        h = torch.rand(state[0].shape, generator=gen) * 2 - 1
        return (h, torch.randn(state[1].shape, generator=gen) * 2) if model.is_lstm else (h,)
    assert isinstance(model, TransformerLanguageModel)
    ctx, vocab = model.context, model.config.vocab_size
    lengths = torch.randint(0, 3 * ctx, (rows,), generator=gen)
    if model.rotary:
        k, v = (torch.randn(state[0].shape, generator=gen) for _ in range(2))
        return (k, v, lengths[None].clone())
    from chargen.models import concat_states

    parts = []
    with torch.inference_mode():
        for n in lengths.tolist():
            one = model.initial_state(1)
            if n:
                _, one = model(torch.randint(0, vocab, (1, n), generator=gen), one)
            parts.append(tuple(s.clone() for s in one))
    return concat_states(parts)


def parity(model: LanguageModel, session: Any, rows: int = 8, seed: int = 0) -> float:
    """Largest |logit difference| between the graph run by ``session`` and ``model.forward``
    on one step from ``random_states``, relative to ``1 + max |logit|``.

    ConfigError when an output has the wrong shape or type, an int64 state output differs, or
    a float state output differs by more than ``1e-4 (1 + max |value|)``.
    """
    state = random_states(model, rows, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, model.config.vocab_size, (rows,), generator=gen)
    feeds = {"ids": ids.numpy()}
    for port, tensor in zip(state_ports(model.config), onnx_state(model, state), strict=True):
        feeds[port.name] = tensor.numpy().copy()
    outputs = session.run(None, feeds)
    with torch.inference_mode():
        logits, new_state = model(ids[:, None], tuple(s.clone() for s in state))
    expected = (logits[:, -1], *onnx_state(model, new_state))
    worst = 0.0
    for port, got, want in zip(output_ports(model.config), outputs, expected, strict=True):
        want = want.numpy()
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ConfigError(f"the graph's {port.name} is {got.dtype}{list(got.shape)}")
        if port.dtype == "int64":
            if not np.array_equal(got, want):
                raise ConfigError(f"the graph's {port.name} differs from chargen's")
            continue
        diff = float(np.abs(got - want).max() / (1.0 + np.abs(want).max())) if got.size else 0.0
        if port.name == "logits":
            worst = diff
        elif not diff <= 1e-4:
            raise ConfigError(f"the graph's {port.name} differs from chargen's by {diff:.2g}")
    return worst
