"""One generated token as every face reports it: ``chargen generate --format jsonl`` writes one
per line (after the sample's seed and temperature), the server sends one per ``token`` event
(``/v1/generate``, streamed or not). Both make it here, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class TokenRecord:
    """Token ``index`` of a sample (0 is the first one drawn): its ``id``, its text, log p of it
    as drawn (nats) and the entropy of the distribution it was drawn from (nats)."""

    index: int
    id: int
    token: str
    logprob: float
    entropy: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``index``, ``id``, ``token``, ``logprob``, ``entropy`` (plain Python
        numbers, whatever array types the record was made from)."""
        return token_fields(
            int(self.index), int(self.id), self.token, float(self.logprob), float(self.entropy)
        )


def token_fields(index: int, id: int, token: str, logprob: float, entropy: float) -> dict[str, Any]:
    """A ``TokenRecord``'s fields as a dict, from values that are plain Python numbers already:
    what the server's batcher sends per token without building the record first."""
    return {"index": index, "id": id, "token": token, "logprob": logprob, "entropy": entropy}


class SampleTokens(Protocol):
    """What ``token_records`` reads of a sample (``generate.Sample``, ``lite.PlainSample``)."""

    @property
    def tokens(self) -> Sequence[int]: ...
    @property
    def pieces(self) -> Sequence[str]: ...
    @property
    def logprobs(self) -> Sequence[float]: ...
    @property
    def entropies(self) -> Sequence[float]: ...


def token_records(sample: SampleTokens) -> list[TokenRecord]:
    """The records of every token ``sample`` drew, in order (tokens cut by a stop included)."""
    return [
        TokenRecord(i, tok, piece, lp, ent)
        for i, (tok, piece, lp, ent) in enumerate(
            zip(sample.tokens, sample.pieces, sample.logprobs, sample.entropies, strict=True)
        )
    ]
