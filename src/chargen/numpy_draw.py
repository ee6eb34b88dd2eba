"""Drawing the next token from NumPy log-probabilities, without torch at import.

``draw`` is ``sampling.select_next`` (inverse CDF with one explicit uniform per row, see
``rng.py``) for NumPy arrays; ``log_softmax`` is NumPy's, for the plain path of the command
line (``lite.py``), which must not load torch; ``numpy_generation`` uses torch's kernel on the
same memory instead, so its log-probabilities are the torch path's bit for bit.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from chargen.errors import GenerationError


def non_finite_error(step: int) -> GenerationError:
    """The error of a step whose model scores hold NaN or infinity."""
    return GenerationError(
        f"the model's scores are not finite numbers at generated token {step + 1} "
        "(its weights may hold NaN or infinity: a diverged or damaged run)"
    )


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - log(sum(exp(z)))`` per row of float32 ``z`` whose row maximum is 0 (shifted)."""
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True, dtype=np.float32))


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
    import torch

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


class TemperatureDraw:
    """A sampling chain of temperature alone (or greedy) in NumPy, without torch: what the plain
    path of the command line (``lite.py``) gives ``token_loop``.

    ``lp = log_softmax((l - max l) / T)`` (``T = 1``: no division) in float32, then ``draw``;
    greedy is the first argmax with ``log p = 0`` and entropy 0.
    """

    reads_history = False
    stateful = False
    ends_rows = False

    def __init__(self, temperature: float, greedy: bool) -> None:
        self.temperature = np.float32(temperature)
        self.greedy = greedy
        self.key: Hashable = ("temperature", float(temperature), greedy)

    def reset(self, seeds: list[int]) -> None:
        """Nothing to reset: no rule keeps state."""

    def done_rows(self) -> None:
        """No rule ends a row."""
        return None

    def draw_arrays(
        self, logits: np.ndarray, history: np.ndarray, u: np.ndarray, step: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, log p of each, entropy of each row) drawn with one uniform per row from
        logits the loop has checked (``usable``)."""
        if self.greedy:
            zeros = np.zeros(len(logits), dtype=np.float32)
            return logits.argmax(axis=1), zeros, zeros
        z = logits - logits.max(axis=1, keepdims=True)
        if self.temperature != 1.0:
            z /= self.temperature
        return draw(log_softmax(z), u)
