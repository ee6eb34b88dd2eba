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
from chargen.sampling import SamplingConfig


def supports(model: LanguageModel) -> bool:
    """True for a float32 LSTM/GRU on the CPU (what ``NumpyRNNStep`` computes)."""
    weight = model.head.weight
    return (
        isinstance(model, RNNLanguageModel)
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
    )


def tempered_logprobs(logits: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
    """The log-probabilities a temperature-only chain draws from (``SamplingChain.draw_arrays``):
    ``log_softmax((l - max l) / T)`` in float32 (``T = 1``: no division; torch's kernel on the
    same memory, so the torch rules' values bit for bit), or for greedy a one-hot on the first
    argmax: ``process_logits`` written for NumPy."""
    if sampling.greedy:
        one_hot = np.full_like(logits, -np.inf)
        one_hot[np.arange(len(logits)), logits.argmax(axis=1)] = 0.0
        return one_hot
    z = logits - logits.max(axis=1, keepdims=True)
    if sampling.temperature != 1.0:
        z /= np.float32(sampling.temperature)
    return torch.log_softmax(torch.from_numpy(z), dim=-1).numpy()
