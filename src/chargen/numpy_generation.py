"""The CPU fast path of ``generate`` for LSTM and GRU models: the step and the draw in NumPy.

Same rules as the torch path (``sampling.process_logits`` then ``sampling.select_next`` with
``rng.uniforms``), so the same seed gives the same tokens; only the float32 rounding of the
model step differs (from the same logits, the log-probabilities are the torch path's bit for
bit). A chain of temperature alone (or greedy without rules) is drawn by ``draw_tempered``; a
chain whose every rule has a NumPy version (``SamplingChain.numpy_ok``, today every rule) by
``draw_chain``, each rule's ``numpy`` method (``numpy_rules``) on the NumPy logits; any other
chain runs the torch processors on them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from chargen.chain import SamplingChain
from chargen.clamp import Clamps
from chargen.models import LanguageModel, RNNLanguageModel, State
from chargen.models.stepper import FusedStepper
from chargen.numpy_draw import draw, usable
from chargen.numpy_step import NumpyRNNStep
from chargen.rng import UniformDraws
from chargen.sampling import SamplingConfig, Temperature, non_finite_error

LoopResult = tuple[np.ndarray, np.ndarray, np.ndarray, int]
"""(history (B, P + length) int64, chosen log-probs (B, length), entropies (B, length), made)."""


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
    z = logits - logits.max(axis=1, keepdims=True)
    if sampling.temperature != 1.0:
        z /= np.float32(sampling.temperature)
    return draw(torch.log_softmax(torch.from_numpy(z), dim=-1).numpy(), u)


def draw_chain(
    chain: SamplingChain, logits: np.ndarray, history: np.ndarray, u: np.ndarray, step: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``SamplingChain.draw`` for NumPy arrays (a ``numpy_ok`` chain): (ids, log p, entropy).

    The usability check, ``chain.numpy_logprobs``, ``draw``, and ``chain.observe`` (given
    tensors that share the arrays' memory) when a rule keeps state.
    """
    if not usable(logits):
        raise non_finite_error(step)
    lp = chain.numpy_logprobs(logits, history)
    picked, chosen, ent = draw(lp, u)
    if chain.stateful:
        chain.observe(torch.from_numpy(picked), torch.from_numpy(lp))
    return picked, chosen, ent


def generate_loop(
    model: RNNLanguageModel,
    state: State,
    ids: list[int],
    length: int,
    sampling: SamplingConfig,
    seeds: list[int],
    advance: Callable[[list[int]], bool] | None,
    chain: SamplingChain | None = None,
    clamps: Clamps | None = None,
) -> LoopResult:
    """Draw up to ``length`` tokens per row from ``state`` (the prompt read but its last token).

    ``advance(tokens)`` sees each new token per row and returns False to stop every row.
    ``chain`` is ``sampling``'s, built by the caller (with the vocabulary constraints need);
    ``clamps``: units held at every step.
    """
    rows = len(seeds)
    stepper = NumpyRNNStep.from_fused(FusedStepper(model), rows, clamps)
    stepper.load(state)
    history = np.empty((rows, len(ids) + length), dtype=np.int64)
    history[:, : len(ids)] = np.asarray(ids, dtype=np.int64)
    history_t = torch.from_numpy(history)  # shares memory: the torch chain sees every token
    chosen = np.zeros((rows, length), dtype=np.float32)
    entropies = np.zeros((rows, length), dtype=np.float32)
    draws = UniformDraws(seeds)
    if chain is None:
        chain = SamplingChain(sampling)
    chain.reset(seeds)
    tempered = all(type(rule) is Temperature for rule in chain.rules)  # or greedy, no rule
    n = len(ids)
    for t in range(length):
        logits = stepper.step(history[:, n - 1])
        if tempered:
            if not usable(logits):
                raise non_finite_error(t)
            nxt, logp, ent = draw_tempered(logits, draws(t), sampling)
        elif chain.numpy_ok:
            nxt, logp, ent = draw_chain(chain, logits, history[:, :n], draws(t), step=t)
        else:
            picked = chain.draw(
                torch.from_numpy(logits), history_t[:, :n], torch.from_numpy(draws(t)), step=t
            )
            nxt, logp, ent = (x.numpy() for x in picked)
        history[:, n] = nxt
        chosen[:, t] = logp
        entropies[:, t] = ent
        n += 1
        if advance is not None and not advance(nxt.tolist()):
            break
    return history, chosen, entropies, n - len(ids)
