"""Each token of a prompt scored by the model given the tokens before it, with the likeliest
alternatives at its place: what the OpenAI-compatible route reports for ``echo`` with
``logprobs`` (``server/openai_choices.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from chargen.models import LanguageModel
from chargen.score import CHUNK


@dataclass(frozen=True)
class PromptTokenScore:
    """Token ``id`` of a prompt (not its first): log p of it given the tokens before it, and
    the ``top`` likeliest tokens at its place (ids and log-probs, likeliest first)."""

    id: int
    logprob: float
    top_ids: list[int]
    top_logprobs: list[float]


@torch.inference_mode()
def prompt_logprobs(
    model: LanguageModel, ids: list[int], top: int, lock: Any = None
) -> list[PromptTokenScore]:
    """The scores of ``ids[1:]``, read as generation reads a prompt (from the initial state, no
    start token), ``CHUNK`` tokens a model call; ``lock`` (a context manager) is held around
    each model call."""
    device = model.head.weight.device
    state = model.initial_state(1, device)
    out: list[PromptTokenScore] = []
    for begin in range(0, len(ids) - 1, CHUNK):
        x = torch.tensor([ids[begin : begin + CHUNK]], dtype=torch.long, device=device)
        targets = ids[begin + 1 : begin + CHUNK + 1]
        with lock if lock is not None else contextlib.nullcontext():
            logits, state = model(x[:, : len(targets)], state)
        logp = torch.log_softmax(logits[0].float(), dim=-1).cpu()
        chosen = logp.gather(1, torch.tensor(targets)[:, None])[:, 0].tolist()
        values, top_ids = torch.topk(logp, min(top, logp.shape[-1]))
        for row, (token, lp) in enumerate(zip(targets, chosen, strict=True)):
            out.append(PromptTokenScore(token, lp, top_ids[row].tolist(), values[row].tolist()))
    return out
