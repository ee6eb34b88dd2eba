"""The NumPy engine's pieces: which models it runs (``supports``) and the temperature draw.

The loop is ``token_loop.TokenLoop`` and the step ``numpy_step.NumpyRNNStep``; a chain draws
on NumPy arrays with ``SamplingChain.draw_arrays``: temperature alone (or greedy without rules)
by ``tempered_logprobs``, a chain whose every rule has a NumPy version (``numpy_ok``, today
every rule) by each rule's ``numpy`` method (``numpy_rules``), any other by the torch
processors on the same memory. The same seed gives the torch engine's tokens; only the float32
rounding of the model step differs (from the same logits, the log-probabilities are bit for
bit those of the torch rules).
"""

from __future__ import annotations

import numpy as np
import torch

from chargen.models import LanguageModel, RNNLanguageModel
from chargen.numpy_draw import draw
from chargen.sampling import SamplingConfig


def supports(model: LanguageModel) -> bool:
    """True for a float32 LSTM/GRU on the CPU (what ``NumpyRNNStep`` computes)."""
    weight = model.head.weight
    return (
        isinstance(model, RNNLanguageModel)
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
    )


def draw_tempered(
    logits: np.ndarray, u: np.ndarray, sampling: SamplingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(next ids, log p of each, entropy of each row) for a temperature-only chain.

    ``lp = log_softmax((l - max l) / T)`` in float32 (``T = 1``: no division), then ``draw``;
    greedy is the first argmax with ``log p = 0`` and entropy 0. These are ``process_logits``
    and ``select_next`` written for NumPy; the log-softmax is torch's kernel on the same memory
    (as in ``SamplingChain.numpy_logprobs``), so ``lp`` is the torch path's bit for bit.
    """
    rows = logits.shape[0]
    if sampling.greedy:
        zeros = np.zeros(rows, dtype=np.float32)
        return logits.argmax(axis=1), zeros, zeros
    return draw(tempered_logprobs(logits, sampling), u)


def tempered_logprobs(logits: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
    """The log-probabilities ``draw_tempered`` draws from: ``log_softmax((l - max l) / T)``
    (torch's kernel on the same memory), or for greedy a one-hot on the first argmax."""
    if sampling.greedy:
        one_hot = np.full_like(logits, -np.inf)
        one_hot[np.arange(len(logits)), logits.argmax(axis=1)] = 0.0
        return one_hot
    z = logits - logits.max(axis=1, keepdims=True)
    if sampling.temperature != 1.0:
        z /= np.float32(sampling.temperature)
    return torch.log_softmax(torch.from_numpy(z), dim=-1).numpy()
