"""The sampling rules on NumPy arrays: what each rule's ``numpy`` method computes, so that the
NumPy engine (``numpy_generation``) draws through a whole chain without a torch op per rule.

Each function is the maths of the torch rule it names (``sampling.py``, ``samplers.py``,
``constraints.py``; their docstrings state it) on ``logits`` (B, V) float and ``history``
(B, T) int64, returning new logits with ``-inf`` for a removed token. They do what the torch
rule does, in the same precision and order of operations: shifts and scalings in the logits'
dtype (IEEE arithmetic, so bit for bit the torch result), probabilities in float64 (``exp`` and
sums may differ from torch's in the last bit; top-p and typical-p compare with a tolerance of
``MASS_TOLERANCE``, far above that, and a float64 value rounded to float32 almost never moves),
ranking with the same tie rule (lower id first). So the NumPy engine and the torch engine draw
the same tokens from the same logits; ``tests/test_numpy_rules.py`` checks every rule.

The whole vocabulary is never sorted where less will do: top-k finds its threshold with
``np.partition``; top-p sorts only the largest probabilities of a large vocabulary, widening
the set until it holds the nucleus.
"""

from __future__ import annotations

import math

import numpy as np

from chargen.sampling_config import GREEDY_BELOW

NEG_INF = float("-inf")
MASS_TOLERANCE = 1e-12  # top-p / typical-p: a cumulative mass >= p - 1e-12 "reaches" p
LN2 = math.log(2.0)
PARTIAL_ABOVE = 512  # top-p ranks only the largest probabilities of a vocabulary this large
PARTIAL_FIRST = 64  # ... starting with this many


# --------------------------------------------------------------------------- shared pieces
def softmax64(logits: np.ndarray) -> np.ndarray:
    """``softmax(logits)`` in float64 per row (``exp(l - max l) / sum``)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """``log_softmax(logits)`` in float64 per row (``z - log sum exp z``, ``z = l - max l``)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def masked(logits: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """``logits`` with ``-inf`` where ``remove`` (B, V), or (V,) for every row (torch's
    ``masked_fill``)."""
    out = logits.copy()
    out[..., remove] = NEG_INF
    return out


def window_seen(history: np.ndarray, window: int, vocab: int) -> np.ndarray:
    """(B, V) bool: the tokens among each row's last ``window`` tokens."""
    recent = history[:, -window:]
    seen = np.zeros((history.shape[0], vocab), dtype=bool)
    if recent.size:
        seen[np.arange(len(recent))[:, None], recent] = True
    return seen


def window_counts(history: np.ndarray, window: int, vocab: int, dtype: np.dtype) -> np.ndarray:
    """(B, V) counts, in ``dtype``, of each token among each row's last ``window`` tokens."""
    recent = history[:, -window:]
    rows = len(recent)
    flat = (recent + vocab * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * vocab).reshape(rows, vocab).astype(dtype)


def keep_one(processed: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Where a row lost every token, restore its argmax in ``original`` so one can be chosen."""
    empty = (processed == NEG_INF).all(axis=1)
    if not empty.any():
        return processed
    out = processed.copy()
    rows = np.flatnonzero(empty)
    best = original[rows].argmax(axis=1)
    out[rows, best] = original[rows, best]
    return out


def keep_prefix_reaching(probs: np.ndarray, order: np.ndarray, mass: float) -> np.ndarray:
    """(B, V) bool: the shortest prefix of ``order`` (per row) whose probability reaches
    ``mass``: token ``order[j]`` is kept iff the mass ranked before it is
    ``< mass - MASS_TOLERANCE`` (a sequential float64 sum, as torch's ``cumsum``); the first
    is always kept. The sums are non-decreasing, so the kept tokens are the first
    ``1 + #{j < V - 1: sum_{i <= j} < mass - MASS_TOLERANCE}`` of ``order``."""
    if len(order) == 1:  # one row: the same in 1-D calls, about half the cost
        cumulative = probs[0, order[0]].cumsum()
        kept = 1 + int(cumulative[:-1].searchsorted(mass - MASS_TOLERANCE))  # how many < it
        keep = np.zeros(order.shape, dtype=bool)
        keep[0, order[0, :kept]] = True
        return keep
    rows = np.arange(len(order))[:, None]
    cumulative = probs[rows, order].cumsum(axis=1)
    keep_ranked = np.empty(order.shape, dtype=bool)
    keep_ranked[:, 0] = True
    np.less(cumulative[:, :-1], mass - MASS_TOLERANCE, out=keep_ranked[:, 1:])
    keep = np.empty_like(keep_ranked)
    keep[rows, order] = keep_ranked
    return keep


def rank_descending(values: np.ndarray) -> np.ndarray:
    """Indices sorting each row from the largest value down, ties lower id first (a stable
    sort, as torch's ``sort(descending=True, stable=True)``)."""
    return (-values).argsort(axis=1, kind="stable")


# --------------------------------------------------------------------------- sampling.py
def repetition_penalty(
    logits: np.ndarray, history: np.ndarray, penalty: float, window: int
) -> np.ndarray:
    """``RepetitionPenalty``: ``l / r`` if ``l > 0`` else ``l * r`` for tokens in the window."""
    seen = window_seen(history, window, logits.shape[1])
    return np.where(seen, np.where(logits > 0, logits / penalty, logits * penalty), logits)


def frequency_penalty(
    logits: np.ndarray, history: np.ndarray, penalty: float, window: int
) -> np.ndarray:
    """``FrequencyPenalty``: ``l - f * count(token in window)``."""
    return logits - penalty * window_counts(history, window, logits.shape[1], logits.dtype)


def presence_penalty(
    logits: np.ndarray, history: np.ndarray, penalty: float, window: int
) -> np.ndarray:
    """``PresencePenalty``: ``l - p * [token in window]``."""
    seen = window_seen(history, window, logits.shape[1]).astype(logits.dtype)
    return logits - penalty * seen


def no_repeat_ngram(logits: np.ndarray, history: np.ndarray, n: int) -> np.ndarray:
    """``NoRepeatNGram``: ``-inf`` for every token completing an n-gram already in the row."""
    length = history.shape[1]
    if n < 1 or length < n:
        return logits
    grams = np.lib.stride_tricks.sliding_window_view(history, n, axis=1)  # (B, T - n + 1, n)
    if n > 1:
        match = (grams[:, :, :-1] == history[:, None, length - n + 1 :]).all(axis=2)
    else:
        match = np.ones(grams.shape[:2], dtype=bool)
    rows, at = np.nonzero(match)
    banned = np.zeros(logits.shape, dtype=bool)
    banned[rows, grams[rows, at, -1]] = True
    return keep_one(masked(logits, banned), logits)


def temperature(logits: np.ndarray, value: float) -> np.ndarray:
    """``Temperature``: ``(l - max l) / T``."""
    return (logits - logits.max(axis=1, keepdims=True)) / value


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """``TopK``: the ``k`` largest logits, ties lower id first; found with ``np.partition``
    (the ``k``-th largest value ``v``: every logit above ``v``, then the lowest ids equal to
    ``v`` until there are ``k``), no sort."""
    vocab = logits.shape[1]
    if k >= vocab:
        return logits
    kth = np.partition(logits, vocab - k, axis=1)[:, vocab - k, None]
    above = logits > kth
    tied = logits == kth
    need = k - above.sum(axis=1, keepdims=True)
    keep = above | (tied & (tied.cumsum(axis=1) <= need))
    return masked(logits, ~keep)


def top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """``TopP``: the smallest set of most likely tokens (ties lower id first) whose float64
    mass reaches ``p - 1e-12``. A vocabulary above ``PARTIAL_ABOVE`` tokens ranks only its
    largest probabilities, row by row (``nucleus``)."""
    if p >= 1.0:
        return logits
    probs = softmax64(logits)
    if logits.shape[1] <= PARTIAL_ABOVE:
        keep = keep_prefix_reaching(probs, rank_descending(probs), p)
    else:
        keep = np.zeros(probs.shape, dtype=bool)
        for row in range(len(probs)):
            keep[row, nucleus(probs[row], p)] = True
    return masked(logits, ~keep)


def nucleus(probs: np.ndarray, p: float) -> np.ndarray:
    """The token ids (V,) of one row's top-p nucleus, ranking only the largest probabilities.

    The candidates are every token at or above the ``m``-th largest probability (ties
    included, in id order), sorted stably from the largest down: their prefix sums are the
    full ranking's. When their total reaches ``p - 1e-12``, every other token has at least
    that much mass before it and is out, so the nucleus is the candidates' prefix; otherwise
    ``m`` doubles.
    """
    vocab = len(probs)
    size = PARTIAL_FIRST
    while True:
        if size >= vocab:
            candidates = np.arange(vocab)
        else:
            kth = np.partition(probs, vocab - size)[vocab - size]
            candidates = np.flatnonzero(probs >= kth)
        ranked = candidates[np.argsort(-probs[candidates], kind="stable")]
        cumulative = np.cumsum(probs[ranked])
        if size >= vocab or cumulative[-1] >= p - MASS_TOLERANCE:
            return ranked[: 1 + int(cumulative[:-1].searchsorted(p - MASS_TOLERANCE))]
        size *= 2


def min_p(logits: np.ndarray, value: float) -> np.ndarray:
    """``MinP``: the tokens with ``p >= min_p * max p`` (float64)."""
    probs = softmax64(logits)
    return masked(logits, probs < value * probs.max(axis=1, keepdims=True))


def typical_p(logits: np.ndarray, p: float) -> np.ndarray:
    """``TypicalP``: tokens ranked by ``|-log p - H|`` (ties lower id first) until their mass
    reaches ``p - 1e-12``."""
    if p >= 1.0:
        return logits
    logp = log_softmax64(logits)
    probs = np.exp(logp)
    ent = -(probs * np.where(logp == NEG_INF, 0.0, logp)).sum(axis=1, keepdims=True)
    order = np.abs(-logp - ent).argsort(axis=1, kind="stable")
    return masked(logits, ~keep_prefix_reaching(probs, order, p))


# --------------------------------------------------------------------------- samplers.py
def breaker_limit(
    tail: np.ndarray, n: int, single: np.ndarray, sequences: list[tuple[int, tuple[int, ...]]]
) -> int:
    """``DRY``'s step 1 for one row: the tokens after its most recent breaker, from the last
    ``len(tail)`` tokens of its window of ``n`` (``n`` when none is there). ``single[i]``:
    token ``i`` is a single-token breaker (ids past the table clip to its last entry, False);
    a ``(head, tail)`` sequence at the same head position as another wins when longer."""
    size = len(tail)
    best, tail_len = -1, 0  # the most recent breaker's head (in the tail), its tail
    if len(single):  # the last single breaker: the first one of the reversed tail
        hits = single.take(tail[::-1], mode="clip")
        after = int(hits.argmax())
        if hits[after]:
            best = size - 1 - after
    for head, seq in sequences:
        if len(seq) >= size:
            continue
        match = tail[: size - len(seq)] == head
        for offset, token in enumerate(seq, start=1):
            match &= tail[offset : size - len(seq) + offset] == token
        heads = match.nonzero()[0]
        if len(heads) and (heads[-1] > best or (heads[-1] == best and len(seq) > tail_len)):
            best, tail_len = int(heads[-1]), len(seq)
    return size - 1 - best - tail_len if best >= 0 else n


def dry(
    logits: np.ndarray,
    w: np.ndarray,
    limits: np.ndarray,
    allowed: int,
    single: frozenset[int],
    penalty: tuple[float, float, int, float],
) -> np.ndarray:
    """``DRY``'s steps 2 and 3 on the window ``w`` (B, n) with each row's limit (B,): every
    token ``x`` with ``L(x) >= a`` that is not a ``single`` breaker gets
    ``l_x - multiplier * base ** min(L(x) - a, E)``, at most ``most``; ``penalty`` is
    ``(multiplier, base, E, most)`` (``E = 0``: no cap). The amount is a Python float (float64)
    rounded to the logits' dtype, as the torch rule's."""
    multiplier, base, cap, most = penalty
    out = logits
    for row, limit in enumerate(limits.tolist()):
        found = dry_repeats(w[row], limit, allowed)
        for token in found.keys() - single:
            exponent = found[token] - allowed
            try:
                amount = min(multiplier * base ** (min(exponent, cap) if cap else exponent), most)
            except OverflowError:  # base ** exponent past a float64
                amount = most
            if out is logits:
                out = logits.copy()
            out[row, token] -= out.dtype.type(amount)
    return out


def dry_repeats(text: np.ndarray, limit: int, allowed: int) -> dict[int, int]:
    """``DRY``'s steps 2 and 3 for one row's window ``text`` (n,): ``{x: L(x)}`` for every
    token ``x`` whose ``L(x) = max L(j)`` over the positions ``j`` it follows
    (``text[j+1] = x``) reaches ``allowed``, with ``L(j) <= limit``.

    ``j`` holds the positions with ``L(j) >= k``: first those with ``text[j] == text[n-1]``,
    then, pass by pass, those that also have ``text[j-k] == text[n-1-k]`` (``j >= k``), until
    none is left or ``k`` reaches the limit; from ``k = allowed`` on, each pass records
    ``L(text[j+1]) >= k``. Only the positions still matching are followed, so a step costs one
    comparison over the window and then a few small ones (the torch rule compares every
    position on every pass).
    """
    m = len(text) - 1
    found: dict[int, int] = {}
    j = (text[:m] == text[m]).nonzero()[0]  # L(j) >= 1
    for k in range(1, limit + 1):
        if not len(j):
            break
        if k >= allowed:  # later passes overwrite with longer repeats
            found.update(dict.fromkeys(text[j + 1].tolist(), k))
        if j[0] < k:  # j = k - 1 has no token k back
            j = j[1:]
        j = j[text[j - k] == text[m - k]]
    return found


def dynamic_temperature(
    logits: np.ndarray, value: float, delta: float, exponent: float
) -> np.ndarray:
    """``DynamicTemperature``: ``(l - max l) / T_dyn``, ``T_dyn`` from the normalised entropy."""
    x = logits.astype(np.float64)
    if value != 1.0:  # undo sampling.Temperature: back to the untempered logits
        x = x * value
    live = x > NEG_INF
    count = live.sum(axis=1)
    x = x - x.max(axis=1, keepdims=True)
    logp = log_softmax64(x)
    ent = -(np.exp(logp) * np.where(live, logp, 0.0)).sum(axis=1)
    norm = np.clip(ent / np.log(np.maximum(count, 2).astype(np.float64)), 0.0, 1.0)
    low = max(0.0, value - delta)
    high = value + delta
    t_dyn = low + (high - low) * norm**exponent
    cold = t_dyn < GREEDY_BELOW
    out = x / np.where(cold, 1.0, t_dyn)[:, None]
    if cold.any():
        best = np.zeros(live.shape, dtype=bool)
        best[np.arange(len(x)), x.argmax(axis=1)] = True
        out = np.where(cold[:, None] & ~best, NEG_INF, out)
    out = np.where((count <= 1)[:, None], logits.astype(np.float64), out)
    return out.astype(logits.dtype)


def top_n_sigma(logits: np.ndarray, n: float) -> np.ndarray:
    """``TopNSigma``: keeps ``l >= max l - n * sigma`` (population sigma of the live logits)."""
    x = logits.astype(np.float64)
    live = x > NEG_INF
    count = np.maximum(live.sum(axis=1, keepdims=True), 1)
    mean = np.where(live, x, 0.0).sum(axis=1, keepdims=True) / count
    var = np.where(live, (x - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count
    cut = x.max(axis=1, keepdims=True) - n * np.sqrt(var)
    return masked(logits, x < cut)


def xtc(logits: np.ndarray, fire: np.ndarray, threshold: float) -> np.ndarray:
    """``XTC`` for the rows that ``fire`` (B,) bool: every token with ``p >= threshold`` but
    the last of them in the ranking by logit (ties lower id first) is removed."""
    if not fire.any():
        return logits
    x = logits.astype(np.float64)
    above = (softmax64(x) >= threshold).sum(axis=1, keepdims=True)
    order = rank_descending(x)
    drop_ranked = (np.arange(x.shape[1]) < above - 1) & fire[:, None]
    drop = np.empty_like(drop_ranked)
    np.put_along_axis(drop, order, drop_ranked, axis=1)
    return masked(logits, drop)


def mirostat(logits: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``MirostatV2``: keeps the tokens of surprisal ``-log2 p <= mu`` (B,), else the argmax."""
    keep = -log_softmax64(logits) / LN2 <= mu[:, None]
    none = ~keep.any(axis=1)
    if none.any():
        rows = np.flatnonzero(none)
        keep[rows, logits[rows].argmax(axis=1)] = True
    return masked(logits, ~keep)
