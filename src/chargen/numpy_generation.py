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
from chargen.models.numpy_step import NumpyRNNStep
from chargen.models.stepper import FusedStepper
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


def draw(lp: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (B,), log p of each (B,), entropy of each row (B,)) drawn from log-probabilities.

    ``sampling.select_next``: the first ``i`` with ``cumsum(exp(lp))_i > u * total`` in float64
    (``u < 0`` counts as 0), clamped to the last token with ``p > 0``; the entropy is
    ``-sum p log p`` with ``0 log 0 = 0`` (a ``-inf`` is floored to ``-1e300``, times
    ``p = 0``), as ``sampling.entropy``.
    """
    rows, vocab = lp.shape
    lp64 = lp.astype(np.float64)
    p = np.exp(lp64)
    np.maximum(lp64, -1e300, out=lp64)
    if rows == 1:  # scalars where NumPy calls on one element would cost more
        cdf = p[0].cumsum()
        i = int(cdf.searchsorted(max(u[0], 0.0) * cdf[-1], side="right"))
        if i >= vocab:  # u * total rounded up to the total: the last live token
            i = vocab - 1 - int((p[0, ::-1] > 0).argmax())
        return np.array([i]), lp[:, i], np.array([-np.dot(p[0], lp64[0])])
    # torch's cumsum is several times faster than NumPy's on short rows; torch's
    # searchsorted is not used: its thread pool fights NumPy's BLAS threads for the cores
    cdf = torch.cumsum(torch.from_numpy(p), dim=1).numpy()
    idx = (cdf <= (u.clip(min=0.0) * cdf[:, -1])[:, None]).sum(axis=1)
    if (idx >= vocab).any():
        last_live = vocab - 1 - (p[:, ::-1] > 0).argmax(axis=1)
        idx = np.minimum(idx, last_live)
    return idx, lp[np.arange(rows), idx], -np.einsum("ij,ij->i", p, lp64)


def usable(logits: np.ndarray) -> bool:
    """``sampling.usable_rows(logits).all()`` for NumPy logits: no NaN, no ``+inf``, and a
    logit above ``-inf`` in every row."""
    if np.isfinite(logits).all():  # the common case, one pass
        return True
    bad = np.isnan(logits) | np.isposinf(logits)
    return bool(not bad.any() and (logits > -np.inf).any(axis=1).all())


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
    stepper = NumpyRNNStep(FusedStepper(model), rows, clamps)
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
