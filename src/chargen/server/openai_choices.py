"""Each choice of a completion while its job runs: the tokens drawn (``Choice.draw``), the
text and tokens that no stop string can take back yet (``Choice.release``), and the
``logprobs`` OpenAI reports: the top tokens of every distribution a request's chain hands the
batcher (``TopTokens``), a prompt's tokens scored by the model for ``echo``
(``score_prompt``), and the ``logprobs`` block of a list of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from chargen.chain import SamplingChain
from chargen.generate import StopWatcher
from chargen.prompt_logprobs import prompt_logprobs
from chargen.sampling import SamplingConfig
from chargen.server.batcher import Batcher, Job


class TopTokens(SamplingChain):
    """A request's sampling chain that keeps the ``top`` most likely tokens of every
    distribution it hands the batcher, for ``logprobs``.

    Its key is its own, so the batcher gives its request a pass of the chain of its own (as it
    does for any chain that reads its history): every ``logprobs`` call is then this request's
    row alone, one call per token drawn, and ``tops[i]`` belongs to the token of index ``i``.
    The list grows on the batcher's thread (``logprobs_arrays``, which every draw calls)
    before that token's event is sent.
    """

    def __init__(
        self, cfg: SamplingConfig, vocab: Sequence[str] | None = None, *, top: int
    ) -> None:
        super().__init__(cfg, vocab)
        self.key = ("own", id(self))
        self.top = top
        self.pieces = list(vocab or [])
        self.tops: list[tuple[list[int], list[float]]] = []

    def logprobs_arrays(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        out = super().logprobs_arrays(logits, history)
        values, ids = torch.topk(torch.from_numpy(out[0]), min(self.top, out.shape[-1]))
        self.tops.append((ids.tolist(), values.tolist()))
        return out

    def top_of(self, index: int) -> dict[str, float]:
        ids, values = self.tops[index]
        return _top_dict(self.pieces, ids, values)


def _top_dict(pieces: Sequence[str], ids: list[int], values: list[float]) -> dict[str, float]:
    """{token text: log p}, most likely first; tokens of probability 0 are left out."""
    out: dict[str, float] = {}
    for token, value in zip(ids, values, strict=True):
        if math.isfinite(value):
            out.setdefault(pieces[token], value)
    return out


# --------------------------------------------------------------------------- the choices
@dataclass(frozen=True)
class Token:
    text: str
    logprob: float | None
    top: dict[str, float] | None
    offset: int  # characters before it: in the completion, or in the prompt for echoed ones


@dataclass(eq=False)
class Choice:
    """One choice in flight: its job, the tokens drawn, and how many were handed out."""

    index: int
    job: Job
    prompt: str
    prompt_tokens: int  # 0 for an empty prompt (the start token is not the client's)
    logprobs: int | None
    stops: StopWatcher
    echoed: list[Token] = field(default_factory=list)  # the prompt's tokens (echo + logprobs)
    drawn: str = ""  # every token's text, before any stop cut
    tokens: list[Token] = field(default_factory=list)
    sent: int = 0  # tokens handed out
    sent_chars: int = 0  # characters of ``drawn`` handed out
    cut: int | None = None  # where a completed stop string starts in ``drawn``
    made: int = 0  # tokens generated (the done event's count)

    def draw(self, event: dict[str, Any]) -> None:
        """Take a token event of the batcher."""
        before = len(self.drawn)
        self.drawn += event["token"]
        self.tokens.append(Token(event["token"], event["logprob"], self._top(event), before))
        if self.stops.stops and self.cut is None:
            hit = self.stops.find(self.drawn, before)
            self.cut = hit[0] if hit else None

    def _top(self, event: dict[str, Any]) -> dict[str, float] | None:
        if self.logprobs is None:
            return None
        chain = self.job.chain
        return chain.top_of(event["index"]) if isinstance(chain, TopTokens) else {}

    def safe_end(self) -> int:
        """Characters of ``drawn`` that no stop string can take back."""
        if self.cut is not None:
            return self.cut
        return self.stops.safe_end(self.drawn) if self.stops.stops else len(self.drawn)

    def release(self, limit: int, final: bool) -> tuple[str, list[Token]]:
        """The text and tokens not yet handed out that end by character ``limit``; ``final``:
        also the token ``limit`` cuts, clipped (a stop string cut into it)."""
        out: list[Token] = []
        end = self.sent_chars
        while self.sent < len(self.tokens):
            token = self.tokens[self.sent]
            token_end = token.offset + len(token.text)
            if token_end > limit:
                if final and token.offset < limit:
                    out.append(replace(token, text=token.text[: limit - token.offset]))
                    self.sent += 1
                break
            out.append(token)
            end = token_end
            self.sent += 1
        if final:
            end = limit
        text = self.drawn[self.sent_chars : end]
        self.sent_chars = max(self.sent_chars, end)
        return text, out


def finish_reason(stop_reason: str) -> str:
    """The batcher's reason in OpenAI's words: a stop string or a complete regex match is a
    natural end (``stop``); the token limit and the time limit are ``length``."""
    return "stop" if stop_reason in ("stop", "regex") else "length"


def logprobs_block(tokens: list[Token], base: int = 0) -> dict[str, list[Any]]:
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [_finite(t.logprob) for t in tokens],
        "top_logprobs": [t.top for t in tokens],
        "text_offset": [base + t.offset for t in tokens],
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def score_prompt(batcher: Batcher, ids: list[int], top: int) -> list[Token]:
    """The prompt's tokens, each with log p under the model given the tokens before it
    (``prompt_logprobs``: as generation reads a prompt); the first has none."""
    pieces = batcher.pieces
    tokens = [Token(pieces[ids[0]], None, None, 0)]
    offset = len(tokens[0].text)
    # not while new weights are copied in (live.py)
    for scored in prompt_logprobs(batcher.model, ids, top, batcher.weights_lock):
        alternatives = _top_dict(pieces, scored.top_ids, scored.top_logprobs)
        tokens.append(Token(pieces[scored.id], scored.logprob, alternatives, offset))
        offset += len(pieces[scored.id])
    return tokens
