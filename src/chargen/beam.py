"""Beam search: the ``width`` most likely continuations of exactly ``length`` tokens.

Each step expands every beam by every token, scores ``sum log p`` and keeps the ``width`` best
overall. The returned score is ``sum log p / length ** length_penalty`` (GNMT-style; with a
fixed length it rescales scores, it does not reorder them). Sampling penalties, bans and
truncation from ``cfg`` shape the candidates; the temperature does not (ranking is by the
model's own log-probabilities, renormalised over the tokens the chain keeps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from chargen.errors import SamplingError
from chargen.sampling import SamplingConfig, process_logits

State = TypeVar("State")
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]
SelectFn = Callable[[State, torch.Tensor], State]
MAX_BEAMS = 256


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
) -> list[tuple[list[int], float]]:
    """Best-first list of (tokens, score) for the ``width`` best sequences found.

    ``step(ids (B,), state) -> (logits (B, V), state)``; ``select_state(state, rows)`` gathers
    beams; ``state`` is the one-row state before ``last_token`` is read.
    """
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_BEAMS:
        raise SamplingError(f"--beams must be an integer in [1, {MAX_BEAMS}], got {width!r}")
    cfg = dataclasses.replace(cfg or SamplingConfig(), temperature=1.0).validate()
    past = torch.tensor([list(history)], dtype=torch.long)
    tokens = torch.empty((1, 0), dtype=torch.long)
    scores = torch.zeros(1, dtype=torch.float64)
    last = torch.tensor([last_token], dtype=torch.long)
    for _ in range(length):
        logits, state = step(last, state)
        rows = tokens.shape[0]
        context = torch.cat([past.expand(rows, -1), tokens], dim=1)
        logprobs = process_logits(logits.float(), context, cfg).double()
        vocab = logprobs.shape[-1]
        total = (scores[:, None] + logprobs).reshape(-1)
        keep = min(width, int(torch.isfinite(total).sum()))
        best = torch.topk(total, keep, sorted=True)
        beam = torch.div(best.indices, vocab, rounding_mode="floor")
        token = best.indices % vocab
        tokens = torch.cat([tokens[beam], token[:, None]], dim=1)
        scores = best.values
        state = select_state(state, beam)
        last = token
    norm = float(max(length, 1)) ** length_penalty
    return [(tokens[i].tolist(), float(scores[i]) / norm) for i in range(tokens.shape[0])]
