"""``POST /v1/beams``: the most likely continuations by beam search (``chargen generate --beams``).

Beam search is not streamed: it knows its best beams only at the end. It runs off the event
loop (a worker thread, under the weights lock, so new weights are not copied in mid-search)
and at most ``MAX_BEAM_SEARCHES`` at once; a request beyond that waits its turn, within the
server's timeout.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from fastapi import FastAPI

from chargen.generate import beam_generate
from chargen.models import LanguageModel
from chargen.sampling import SamplingConfig
from chargen.server.requests import (
    BeamRequest,
    ServerLimits,
    check_length_and_prompt,
    sampling_of,
)
from chargen.tokenizer import Tokenizer

MAX_BEAM_SEARCHES = 2
"""Beam searches running at once (each holds a worker thread and a core while it runs)."""


def add_beam_routes(
    app: FastAPI, model: LanguageModel, tokenizer: Tokenizer, lock: Any, limits: ServerLimits
) -> None:
    """``POST /v1/beams``; ``lock`` guards the model; ``limits``: the server's."""
    turns = asyncio.Semaphore(MAX_BEAM_SEARCHES)

    def search(req: BeamRequest, cfg: SamplingConfig) -> list[Any]:
        with lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown characters are dropped, as /v1/generate
            return beam_generate(
                model,
                tokenizer,
                req.prompt,
                beams=req.beams,
                length=req.length,
                length_penalty=req.length_penalty,
                sampling=cfg,
                unknown="drop",
            )

    @app.post("/v1/beams")
    async def beams(req: BeamRequest) -> dict[str, Any]:
        """The ``beams`` best continuations of ``prompt`` of ``length`` tokens, best first, each
        with its text and score (``sum log p / length ** length_penalty``, nats). The
        penalties, truncations and constraints among the sampling fields shape the scores as
        on the command line; the temperature is ignored (beam search is deterministic)."""
        check_length_and_prompt(req, limits)
        cfg = sampling_of(req)
        async with turns:
            found = await asyncio.wait_for(
                asyncio.to_thread(search, req, cfg), timeout=limits.timeout_s
            )
        return {
            "beams": [
                {
                    "text": s.text,
                    "score": s.logprobs[0],
                    "tokens": len(s.tokens),
                    "stop_reason": s.stop_reason,
                    "matched": s.matched,
                }
                for s in found
            ]
        }
