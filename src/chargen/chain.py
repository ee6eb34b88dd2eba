"""A sampling chain, built once per request: the active rules of a ``SamplingConfig`` in order.

The chain answers for its rules, from what each rule declares (``sampling.LogitsProcessor``):
whether any reads the history (the server then gives the request its own pass; the penalties'
windows need it), whether all have a NumPy version (the NumPy engine then draws without
torch), and which rules are penalties and which truncations (beam search scores candidates
with the first and prunes with the second). No caller looks at configuration fields to decide
these things, so a new rule is added in one place.

``draw`` is ``sampling.draw`` for rules already built: ``check_finite_logits``, the rules,
``log_softmax`` (a one-hot for greedy) and the inverse-CDF draw with one uniform per row.
"""

from __future__ import annotations

from collections.abc import Hashable

import torch

from chargen.sampling import (
    PENALTY,
    TRUNCATION,
    LogitsProcessor,
    SamplingConfig,
    build_processors,
    check_finite_logits,
    entropy,
    logprobs_after,
    select_next,
)


class SamplingChain:
    """The rules of ``cfg`` (validated once), in the documented order, and what they need."""

    def __init__(self, cfg: SamplingConfig) -> None:
        self.cfg = cfg.validate()
        self.rules: list[LogitsProcessor] = build_processors(cfg)
        self.greedy = cfg.greedy
        self.reads_history = any(rule.reads_history for rule in self.rules)
        self.stateful = any(rule.stateful for rule in self.rules)
        self.numpy_ok = all(rule.has_numpy for rule in self.rules)

    @property
    def penalties(self) -> list[LogitsProcessor]:
        """The rules of the first stage (on the raw logits)."""
        return [rule for rule in self.rules if rule.stage == PENALTY]

    @property
    def truncations(self) -> list[LogitsProcessor]:
        """The rules of the last stage (on the tempered distribution)."""
        return [rule for rule in self.rules if rule.stage == TRUNCATION]

    @property
    def key(self) -> Hashable:
        """Equal for chains whose rows can share one pass: same rules, no history read.

        A chain that reads the history has a key of its own (its identity).
        """
        if self.reads_history or self.stateful:
            return ("own", id(self))
        return tuple(sorted(self.cfg.to_dict().items()))

    def logprobs(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, V) of the distribution sampled from (``process_logits``)."""
        return logprobs_after(self.rules, self.greedy, logits, history)

    def draw(
        self, logits: torch.Tensor, history: torch.Tensor, uniforms: torch.Tensor, step: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token per row: (ids (B,), log p of each (B,), entropy (B,)).

        ``step`` (the index of the token drawn) only names it in an error.
        """
        check_finite_logits(logits, step)
        logprobs = self.logprobs(logits, history)
        picked = select_next(logprobs, uniforms)
        return picked, logprobs.gather(1, picked[:, None])[:, 0], entropy(logprobs)
