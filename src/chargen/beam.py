"""Beam search: the ``width`` most likely continuations of ``length`` tokens (fewer when a
constraint ends a beam).

The model is seen through two callables, so any state-carrying model fits:

- ``step(ids (B,) int64, state) -> (logits (B, V), new_state)`` reads one token per row;
- ``select_state(state, index (B',) int64) -> state`` gathers rows (beams) of a state.

Every step, each beam ``b`` with running score ``s_b`` is expanded into its ``width`` best
candidates ``s_b + log p(x | beam b)``; the ``width`` best of all candidates become the new beams
(the standard algorithm; with ``width >= V ** (length - 1)`` it is exhaustive, so exact).

Scores. ``log p`` is the model's log-probability after the sampling penalties of ``cfg``
(repetition, frequency and presence penalties and the no-repeat-n-gram ban, which see the
``history`` plus the beam's own tokens): ``log_softmax`` of the penalised logits. Truncation
(top-k, top-p, min-p, typical-p) is a *constraint*: a token it removes cannot extend the beam,
but the kept tokens are not renormalised, so a score stays the (penalised) model's
log-probability and beams from flat and peaked contexts compare fairly. The temperature is
ignored (taken as 1, also for the truncations): beam search is already deterministic, and a
temperature only rescales what it ranks. The returned score is the GNMT-style normalisation
``sum_t log p(x_t | x_<t) / length ** length_penalty``; as every sequence has the same length
it rescales, it does not reorder. Ties are broken towards the better-ranked beam and then the
lower token id, so results are deterministic. Stop sequences are the caller's job.

Constraints (``constraints.py``: regex, bans, logit bias) are first-stage rules, so they shape
the scores as the penalties do (a masked token cannot extend a beam). Stateful rules follow
the beams: after each step the chain is told which beams were kept (``select``) and which
token each took (``observe``). With ``--regex`` a beam whose automaton can go no further (a
complete match, ``chain.done``) leaves the search as a finished hypothesis with its own
length (the length penalty then matters), and the search goes on from the others (still
``width`` candidates a step). What comes back is the ``width`` best finished or full-length
beams whose text matches the pattern in full, by normalised score: a beam cut off at
``length`` before its match was complete is dropped, so the result may be empty. An
``end_token`` (the boundary of a ``--lines`` run's items) finishes a beam the same way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from chargen import constraints
from chargen.chain import SamplingChain
from chargen.errors import SamplingError
from chargen.sampling import (
    NEG_INF,
    LogitsProcessor,
    SamplingConfig,
    apply_processors,
    check_finite_logits,
)

State = TypeVar("State")
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]
SelectFn = Callable[[State, torch.Tensor], State]
MAX_BEAMS = 256


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check(width: int, length: int, length_penalty: float, last_token: int) -> None:
    if not _is_int(width) or not 1 <= width <= MAX_BEAMS:
        raise SamplingError(f"--beams must be an integer in [1, {MAX_BEAMS}], got {width!r}")
    if not _is_int(length) or length < 0:
        raise SamplingError(f"--length must be an integer >= 0, got {length!r}")
    if (
        not isinstance(length_penalty, numbers.Real)
        or isinstance(length_penalty, bool)
        or not math.isfinite(length_penalty)
    ):
        raise SamplingError(f"--length-penalty must be a finite number, got {length_penalty!r}")
    if not _is_int(last_token) or last_token < 0:
        raise SamplingError(f"the last prompt token must be a token id, got {last_token!r}")


@torch.inference_mode()
def beam_search(
    step: StepFn,
    select_state: SelectFn,
    state: State,
    last_token: int,
    *,
    width: int,
    length: int,
    length_penalty: float = 1.0,
    cfg: SamplingConfig | None = None,
    history: Sequence[int] = (),
    vocab: Sequence[str] | None = None,
    end_token: int | None = None,
) -> list[tuple[list[int], float]]:
    """The ``width`` best sequences of ``length`` new tokens (fewer where a constraint ended a
    beam: a complete ``--regex`` match), best first, with scores.

    ``state`` is the model state (batch 1) after reading the prompt except its last token,
    ``last_token``, which the first ``step`` reads. ``history`` is what the penalties and the
    n-gram ban look at before the beam's own tokens (normally the whole prompt, ``last_token``
    included). ``ids`` and ``index`` are given to ``step`` / ``select_state`` as CPU tensors (move
    them to the model's device there); logits may come back on any device. ``vocab`` (the text
    of each token) is what the constraints of ``cfg`` need. A beam that draws ``end_token``
    (a ``--lines`` run's item boundary) is finished there, the token its last.

    Each result is ``(tokens, sum log p / length ** length_penalty)`` (see the module docstring
    for ``log p``). Fewer than ``width`` results come back when fewer sequences are possible
    (``V ** length < width``, or truncation and bans leave fewer). ``length = 0`` gives
    ``[([], 0.0)]``. Raises SamplingError for a width outside ``[1, MAX_BEAMS]``, a negative
    length or a non-finite length penalty.
    """
    _check(width, length, length_penalty, last_token)
    cfg = dataclasses.replace(cfg or SamplingConfig(), temperature=1.0)
    chain = SamplingChain(cfg, vocab=vocab)
    penalties, truncations = chain.penalties, chain.truncations
    chain.reset([0])

    texts = list(vocab or ())

    def complete(found: list[tuple[list[int], float]]) -> list[tuple[list[int], float]]:
        if cfg.regex is None:
            return found
        return [(row, s) for row, s in found if constraints.matches(cfg, _text(texts, row))]

    if length == 0:
        return complete([([], 0.0)])

    past = torch.tensor(list(history), dtype=torch.long).reshape(1, -1)
    tokens = torch.empty((1, 0), dtype=torch.long)  # (K, t): the beams' tokens so far
    scores = torch.zeros(1, dtype=torch.float64)  # (K,): their summed log-probabilities
    ids = torch.tensor([last_token], dtype=torch.long)
    finished: list[tuple[list[int], float]] = []  # beams a constraint ended (normalised scores)
    for t in range(length):
        logits, state = step(ids, state)
        beams = tokens.shape[0]
        if logits.dim() != 2 or logits.shape[0] != beams:
            raise ValueError(f"step must return logits ({beams}, V), got {tuple(logits.shape)}")
        check_finite_logits(logits, t)
        context = torch.cat([past.expand(beams, -1), tokens], dim=1)
        logprobs = _candidate_logprobs(
            logits.detach().cpu().double(), context, penalties, truncations
        )
        vocab_size = logprobs.shape[-1]
        # each beam's best `per_beam` candidates, then the best `width` of them all
        per_beam = min(width, vocab_size)
        totals = scores[:, None] + logprobs
        best, best_tokens = (
            x[:, :per_beam] for x in torch.sort(totals, dim=-1, descending=True, stable=True)
        )
        flat = best.reshape(-1)
        order = torch.sort(flat, descending=True, stable=True).indices[:width]
        order = order[flat[order] > NEG_INF]
        beam = torch.div(order, per_beam, rounding_mode="floor")
        ids = best_tokens.reshape(-1)[order]
        tokens = torch.cat([tokens[beam], ids[:, None]], dim=1)
        scores = flat[order]
        if chain.stateful:  # stateful rules (a regex automaton) follow the beams kept
            chain.select(beam)
            chain.observe(ids, logprobs[beam])
        ended = chain.done()
        if end_token is not None:
            at_end = ids == end_token
            ended = at_end if ended is None else ended | at_end
        if ended is not None and bool(ended.any()):
            norm = float(t + 1) ** length_penalty
            finished += [
                (row, float(score) / norm)
                for row, score in zip(tokens[ended].tolist(), scores[ended].tolist(), strict=True)
            ]
            going = torch.nonzero(~ended)[:, 0]
            tokens, scores, ids, beam = tokens[going], scores[going], ids[going], beam[going]
            chain.select(going)
            if not len(going):
                break
        if t + 1 < length:
            state = select_state(state, beam)
    norm = float(length) ** length_penalty
    found = finished + [
        (row, float(score) / norm)
        for row, score in zip(tokens.tolist(), scores.tolist(), strict=True)
    ]
    if finished:  # best first, over finished and full-length beams (stable: ties keep rank)
        found = sorted(found, key=lambda item: -item[1])
    return complete(found)[:width]


def _text(vocab: Sequence[str], tokens: list[int]) -> str:
    return "".join(vocab[t] for t in tokens)


def _candidate_logprobs(
    logits: torch.Tensor,
    context: torch.Tensor,
    penalties: list[LogitsProcessor],
    truncations: list[LogitsProcessor],
) -> torch.Tensor:
    """(K, V) ``log_softmax`` of the penalised logits, ``-inf`` where truncation removes a token."""
    penalised = apply_processors(penalties, logits, context)
    logprobs = torch.log_softmax(penalised, dim=-1)
    if truncations:
        kept = apply_processors(truncations, penalised, context) > NEG_INF
        logprobs = logprobs.masked_fill(~kept, NEG_INF)
    return logprobs
