"""A sampling chain, built once per request: the active rules of a ``SamplingConfig`` in order.

The chain answers for its rules, from what each rule declares (``sampling.LogitsProcessor``):
whether any reads the history (the server then gives the request its own pass; the penalties'
windows need it), whether all have a NumPy version (the NumPy engine then runs the rules on its
arrays, ``numpy_logprobs``, without a torch processor), and which rules are penalties and which
truncations (beam search scores candidates with the first and prunes with the second). No caller looks at configuration fields to decide
these things, so a new rule is added in one place.

``draw`` is ``sampling.draw`` for rules already built: ``check_finite_logits``, the rules,
``log_softmax`` (a one-hot for greedy) and the inverse-CDF draw with one uniform per row.

Rules that keep state from one token to the next (``stateful``: mirostat's running target,
a regex automaton's position) have three more methods, which the chain forwards and every
generation loop calls:

* ``reset(seeds)`` — before the first token; one row per seed (a rule that draws its own
  random numbers takes them from the row's seed, so a row's text is still a function of its
  seed);
* ``observe(tokens, logprobs)`` — after each draw: the tokens chosen (B,) and the
  distribution they were drawn from (B, V);
* ``select(rows)`` — beam search kept these rows (a LongTensor of row indices, repeats
  allowed): the state follows them.

Rules come from ``sampling.build_processors`` (the classic ones) and the ``rules(cfg)`` of
``samplers.py`` and ``constraints.py``, merged in the documented order of stages (stable, so
rules of one stage keep their module's order).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from chargen import constraints, samplers
from chargen.numpy_draw import draw
from chargen.numpy_generation import tempered_logprobs
from chargen.sampling import (
    NEG_INF,
    PENALTY,
    TRUNCATION,
    LogitsProcessor,
    SamplingConfig,
    Temperature,
    build_processors,
    check_finite_logits,
    entropy,
    logprobs_after,
    select_next,
)


class SamplingChain:
    """The rules of ``cfg`` (validated once), in the documented order, and what they need."""

    def __init__(self, cfg: SamplingConfig, vocab: Sequence[str] | None = None) -> None:
        """``vocab``: the text of each token (``Tokenizer.token_texts`` of every id), which
        the constraints (``--regex``, bans, logit bias) need; without it they are an error."""
        self.cfg = cfg.validate()
        self.rules: list[LogitsProcessor] = sorted(
            [*build_processors(cfg), *_extra_rules(cfg, vocab)], key=lambda rule: rule.stage
        )
        self.greedy = cfg.greedy
        self.reads_history = any(rule.reads_history for rule in self.rules)
        self._stateful = [rule for rule in self.rules if rule.stateful]
        self.stateful = bool(self._stateful)
        self.numpy_ok = all(rule.has_numpy for rule in self.rules)
        self.ends_rows = any(rule.ends_rows for rule in self.rules)
        # temperature alone (or greedy with no rule): ``tempered_logprobs``' few NumPy calls
        self.tempered = all(type(rule) is Temperature for rule in self.rules)
        # equal for chains whose rows can share one pass: same rules, no history, no state
        self.key: Hashable = (
            ("own", id(self))
            if self.reads_history or self.stateful
            else tuple(sorted((k, v) for k, v in self.cfg.to_dict().items() if k != "clamp"))
        )

    @property
    def penalties(self) -> list[LogitsProcessor]:
        """The rules of the first stage (on the raw logits)."""
        return [rule for rule in self.rules if rule.stage == PENALTY]

    @property
    def truncations(self) -> list[LogitsProcessor]:
        """The rules of the last stage (on the tempered distribution)."""
        return [rule for rule in self.rules if rule.stage == TRUNCATION]

    def reset(self, seeds: list[int]) -> None:
        """Fresh per-row state for stateful rules, one row per seed."""
        for rule in self._stateful:
            rule.reset(seeds)  # type: ignore[attr-defined]

    def observe(self, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        """Tell stateful rules which tokens were drawn (B,) from which distribution (B, V)."""
        for rule in self._stateful:
            rule.observe(tokens, logprobs)  # type: ignore[attr-defined]

    def select(self, rows: torch.Tensor) -> None:
        """Beam search kept ``rows``: stateful rules keep their state for those rows."""
        for rule in self._stateful:
            rule.select(rows)  # type: ignore[attr-defined]

    def xray(self, logits: torch.Tensor, history: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """(label, log-probabilities) of the model's distribution, then after each rule in turn;
        the last is ``logprobs(logits, history)`` (greedy: its one-hot). Stateful rules are
        shown as they stand (before ``observe``)."""
        stages = [("model", torch.log_softmax(logits, dim=-1))]
        current = logits
        for rule in self.rules:
            current = rule(current, history)
            stages.append((rule_label(rule), torch.log_softmax(current, dim=-1)))
        if self.greedy:
            stages.append(("greedy (T=0)", self.logprobs(logits, history)))
        return stages

    def done(self) -> torch.Tensor | None:
        """(B,) bool: rows a rule has ended (a regex automaton that can go no further, its text
        a full match); None when no rule ends rows. The loops stop such a row as they stop one
        that wrote a stop string."""
        ended = [rule.done() for rule in self.rules if rule.ends_rows]  # type: ignore[attr-defined]
        if len(ended) < 2:
            return ended[0] if ended else None
        return torch.stack(ended).any(dim=0)

    def logprobs(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, V) of the distribution sampled from (``process_logits``)."""
        return logprobs_after(self.rules, self.greedy, logits, history)

    def numpy_logprobs(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``logprobs`` for NumPy arrays (the chain is ``numpy_ok``): each rule's ``numpy``.

        The closing ``log_softmax`` is torch's kernel on the same memory (no copy): on one row
        it is cheaper than NumPy's, and the log-probabilities are bit for bit the torch path's.
        """
        for rule in self.rules:
            logits = rule.numpy(logits, history)
        if self.greedy:
            one_hot = np.full_like(logits, NEG_INF)
            one_hot[np.arange(len(logits)), logits.argmax(axis=1)] = 0.0
            return one_hot
        return torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()

    def done_rows(self) -> np.ndarray | None:
        """``done`` as a NumPy bool array (None when no rule ends rows)."""
        ended = self.done() if self.ends_rows else None
        return None if ended is None else ended.cpu().numpy()

    def logprobs_arrays(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``logprobs`` on NumPy arrays: a temperature-only chain by ``tempered_logprobs``, a
        ``numpy_ok`` chain by its rules' NumPy versions, any other by the torch rules on
        tensors that share the arrays' memory."""
        if self.tempered:
            return tempered_logprobs(logits, self.cfg)
        if self.numpy_ok:
            return self.numpy_logprobs(logits, history)
        return self.logprobs(torch.from_numpy(logits), torch.from_numpy(history)).numpy()

    def draw_arrays(
        self, logits: np.ndarray, history: np.ndarray, u: np.ndarray, step: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``draw`` on NumPy arrays (what ``token_loop`` calls, once it has checked the logits
        with ``numpy_draw.usable``): ``logprobs_arrays``, the inverse-CDF ``draw`` and
        ``observe`` for stateful rules. The same tokens and log-probabilities as ``draw``;
        ``step`` names the token in an error."""
        lp = self.logprobs_arrays(logits, history)
        picked, chosen, ent = draw(lp, u)
        if self.stateful:
            self.observe(torch.from_numpy(picked), torch.from_numpy(lp))
        return picked, chosen, ent

    def draw(
        self, logits: torch.Tensor, history: torch.Tensor, uniforms: torch.Tensor, step: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token per row: (ids (B,), log p of each (B,), entropy (B,)).

        ``step`` (the index of the token drawn) only names it in an error.
        """
        check_finite_logits(logits, step)
        logprobs = self.logprobs(logits, history)
        picked = select_next(logprobs, uniforms)
        if self.stateful:
            self.observe(picked, logprobs)
        return picked, logprobs.gather(1, picked[:, None])[:, 0], entropy(logprobs)


def _extra_rules(cfg: SamplingConfig, vocab: Sequence[str] | None) -> list[LogitsProcessor]:
    """The rules of ``samplers.py`` and ``constraints.py`` that ``cfg`` switches on."""
    return [*samplers.rules(cfg, vocab), *constraints.rules(cfg, vocab)]


def rule_label(rule: LogitsProcessor) -> str:
    """``TopK(k=5)`` -> ``top k 5``; further settings as ``name=value``
    (``repetition penalty 1.3, window=64``)."""
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(rule).__name__).lower()
    if not dataclasses.is_dataclass(rule):
        return name
    values = [
        (f.name, f"{v:g}" if isinstance(v := getattr(rule, f.name), float) else str(v))
        for f in dataclasses.fields(rule)
        if f.init
    ]
    if not values:
        return name
    shown = [(key, value if len(value) <= 12 else value[:11] + "…") for key, value in values]
    rest = "".join(f", {key}={value}" for key, value in shown[1:3])
    return f"{name} {shown[0][1]}{rest}"
