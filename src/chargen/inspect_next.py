"""The seed's lesson on the user's own model: the next-token distribution, reshaped.

``next_distribution`` is the one place the distribution after a prompt is computed, with the
chain's X-ray (``inspect``, the server's ``/v1/distribution`` and the page's charts use it;
``Distribution.top`` and ``stage_summary`` are what the server sends of it).
``next_token_table`` gives the top candidates at each temperature ``T`` (``softmax(logits /
T)``, T = 0 greedy);
``xray_table`` shows the distribution after each rule of a sampling chain in turn — the model's
own, then each penalty, the temperature, each truncation — so a learner sees what each knob
does; its last column is the distribution ``draw`` samples from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from chargen.chain import SamplingChain
from chargen.clamp import Clamps
from chargen.errors import ConfigError
from chargen.generate import (
    encode_prompt,
    prompt_state,
    row_stepper,
    start_token,
    token_strings,
)
from chargen.models import LanguageModel
from chargen.sampling import SamplingConfig, entropy, process_logits
from chargen.token_loop import RowStepper
from chargen.tokenizer import Tokenizer


@dataclass
class NextTokenTable:
    """Top candidates (by the model's own probability) and their probability in each column
    (a temperature, or a stage of a sampling chain)."""

    prompt: str
    columns: list[str]
    tokens: list[str]
    probs: list[list[float]]  # probs[i][j]: token i in column j
    entropies: list[float]  # nats, one per column

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: probabilities per column, entropies in bits."""
        return {
            "prompt": self.prompt,
            "columns": self.columns,
            "tokens": self.tokens,
            "probs": self.probs,
            "entropy_bits": [h / math.log(2) for h in self.entropies],
        }

    def render(self) -> str:
        """A plain-text table; entropies in bits."""
        width = max(9, *(len(c) for c in self.columns))
        head = f"{'token':>10} " + " ".join(f"{c:>{width}}" for c in self.columns)
        lines = [f"next token after {self.prompt[-40:]!r}", head, "-" * len(head)]
        for token, row in zip(self.tokens, self.probs, strict=True):
            lines.append(f"{token!r:>10} " + " ".join(f"{p:{width}.4f}" for p in row))
        lines.append("-" * len(head))
        lines.append(
            f"{'entropy':>10} "
            + " ".join(f"{h / math.log(2):{width - 2}.3f} b" for h in self.entropies)
        )
        return "\n".join(lines)


@torch.inference_mode()
def next_logits(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    unknown: str = "warn",
    clamp: Sequence[str] = (),
    base: RowStepper | None = None,
) -> tuple[list[int], torch.Tensor]:
    """The prompt's ids and the model's logits (1, V) float32 on the CPU for the token after it.

    Computed as ``generate`` computes its first step (``row_stepper``, ``prompt_state``), so
    the logits are those its first draw sees. An empty prompt starts from ``start_token`` (a
    newline where the vocabulary has one); ``clamp``: units held at every step (``--clamp``);
    ``base``: a row stepper of ``model`` to share the weights of (the server's), else one is
    built.
    """
    model.eval()
    ids = encode_prompt(tokenizer, prompt, unknown) or [start_token(tokenizer)]
    clamps = Clamps.build(model, clamp)
    rows = base.fresh() if base is not None else row_stepper(model)
    rows.clamps = clamps
    rows.add(prompt_state(model, rows, ids, clamps))
    logits = rows.step(np.array([ids[-1]], dtype=np.int64))
    return ids, torch.from_numpy(logits.copy())


@dataclass
class Distribution:
    """The next token's distribution after a prompt, and after each rule of a chain."""

    ids: list[int]  # the prompt's tokens (the history the penalties read)
    logits: torch.Tensor  # (1, V) float32: the model's scores
    stages: list[tuple[str, torch.Tensor]]  # (label, log-probs (1, V)): the model's, each rule's

    def top(self, top: int) -> tuple[list[int], list[float]]:
        """The ids and log-probabilities of the model's ``top`` likeliest tokens at T = 1
        (the first stage), likeliest first; a log-probability may be -inf."""
        logp = self.stages[0][1][0]
        found = torch.topk(logp, min(top, logp.numel()))
        return [int(i) for i in found.indices], [float(v) for v in found.values.tolist()]

    def summaries(self, top: int) -> list[StageSummary]:
        """Every stage as ``stage_summary`` gives it, the model's first."""
        return [stage_summary(label, logp[0], top) for label, logp in self.stages]


@dataclass(frozen=True)
class StageSummary:
    """One stage of the X-ray in brief: its likeliest tokens that keep p > 0 and their
    log-probabilities (likeliest first, ties by id), how many tokens keep p > 0, and the
    entropy in bits (None when no token keeps p > 0 or it is not finite)."""

    label: str
    ids: list[int]
    logprobs: list[float]
    kept: int
    entropy_bits: float | None


def stage_summary(label: str, logprobs: torch.Tensor, top: int) -> StageSummary:
    """``StageSummary`` of the log-probabilities ``logprobs`` (V,) of one stage: of its ``top``
    likeliest tokens, those with p > 0; ``H = -sum p log p`` over the tokens with p > 0."""
    order = torch.sort(logprobs, descending=True, stable=True).indices[:top].tolist()
    kept = [i for i in order if math.isfinite(float(logprobs[i]))]
    probs = logprobs.exp()
    h = -float(torch.where(probs > 0, probs * logprobs, torch.zeros_like(probs)).sum())
    alive = int(torch.isfinite(logprobs).sum())
    return StageSummary(
        label=label,
        ids=kept,
        logprobs=[float(logprobs[i]) for i in kept],
        kept=alive,
        entropy_bits=max(h, 0.0) / math.log(2) + 0.0 if alive and math.isfinite(h) else None,
    )


def next_distribution(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    cfg: SamplingConfig,
    unknown: str = "warn",
    base: RowStepper | None = None,
) -> Distribution:
    """The one computation behind ``inspect``, ``/v1/distribution`` and the page's charts:
    ``next_logits`` then ``SamplingChain.xray``; the last stage is what ``draw`` samples from
    at the first generated token."""
    ids, logits = next_logits(model, tokenizer, prompt, unknown, cfg.clamp, base)
    chain = SamplingChain(cfg, vocab=token_strings(tokenizer))
    with torch.inference_mode():
        stages = chain.xray(logits, torch.tensor([ids], dtype=torch.long))
    return Distribution(ids, logits, stages)


def _table(
    prompt: str,
    columns: list[str],
    stages: list[torch.Tensor],
    logits: torch.Tensor,
    tokenizer: Tokenizer,
    top: int,
) -> NextTokenTable:
    order = torch.argsort(torch.softmax(logits, -1)[0], descending=True, stable=True)[:top].tolist()
    return NextTokenTable(
        prompt=prompt,
        columns=columns,
        tokens=[tokenizer.decode([i]) for i in order],
        probs=[[float(lp[0, i].exp()) for lp in stages] for i in order],
        entropies=[float(entropy(lp)[0]) for lp in stages],
    )


def next_token_table(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    temperatures: list[float],
    top: int = 10,
    unknown: str = "warn",
    clamp: Sequence[str] = (),
) -> NextTokenTable:
    """Distribution of the token after ``prompt`` at each temperature (top ``top`` candidates)."""
    _, logits = next_logits(model, tokenizer, prompt, unknown, clamp)
    none = torch.zeros((1, 0), dtype=torch.long)
    per_t = [
        process_logits(logits, none, SamplingConfig(temperature=t).validate()) for t in temperatures
    ]
    return _table(prompt, [f"T={t:g}" for t in temperatures], per_t, logits, tokenizer, top)


def xray_table(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    cfg: SamplingConfig,
    top: int = 10,
    unknown: str = "warn",
) -> NextTokenTable:
    """The distribution after each stage of ``cfg``'s chain; the prompt is the history the
    penalties read. The last column is what ``draw`` would sample from."""
    found = next_distribution(model, tokenizer, prompt, cfg, unknown)
    labels, stages = zip(*found.stages, strict=True)
    return _table(prompt, list(labels), list(stages), found.logits, tokenizer, top)


DEFAULT_TEMPERATURES = (0.2, 0.5, 1.0, 1.2)
"""The columns of ``chargen inspect`` without a sampling rule: the seed's four temperatures."""


@dataclass(frozen=True)
class InspectPlan:
    """What ``chargen inspect`` shows: the X-ray of one chain (``xray``), or the model's
    distribution at each temperature; ``configs``: one per temperature."""

    temperatures: list[float]
    configs: list[SamplingConfig]
    xray: bool

    def table(
        self,
        model: LanguageModel,
        tokenizer: Tokenizer,
        prompt: str,
        top: int = 10,
        unknown: str = "warn",
    ) -> NextTokenTable:
        """``xray_table`` of the chain, else ``next_token_table`` (units held by ``clamp``); the
        ``top`` candidates (ConfigError below 1)."""
        if top < 1:
            raise ConfigError(f"--top must be >= 1, got {top}")
        if self.xray:
            return xray_table(model, tokenizer, prompt, self.configs[0], top, unknown)
        clamp = self.configs[0].clamp  # held units change the model's distribution, not a rule
        return next_token_table(model, tokenizer, prompt, self.temperatures, top, unknown, clamp)


def inspect_plan(rules: dict[str, Any], temperatures: Sequence[float] | None) -> InspectPlan:
    """The plan for sampling fields ``rules`` and ``temperatures`` (None or empty: not given).

    Any rule but the temperature and ``clamp`` asks for the X-ray of its chain, at one
    temperature (1 unless given); else the model at each temperature (``DEFAULT_TEMPERATURES``
    unless given). ConfigError for an X-ray at several temperatures or an invalid rule.
    """
    rules = {k: v for k, v in rules.items() if k != "temperature"}
    xray = bool(set(rules) - {"clamp"})
    chosen = list(temperatures or ([1.0] if xray else DEFAULT_TEMPERATURES))
    if xray and len(chosen) > 1:
        raise ConfigError("the X-ray of a sampling chain takes one --temperature")
    configs = [SamplingConfig(temperature=t, **rules).validate() for t in chosen]
    return InspectPlan(chosen, configs, xray)


def plot_table(table: NextTokenTable, path: str) -> None:
    """Bar charts of the top candidates, one panel per temperature (matplotlib, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'chargen[plot]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chargen.atomic import atomic_write_bytes

    n = len(table.columns)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), sharey=True, squeeze=False)
    labels = [repr(t)[1:-1] or "''" for t in table.tokens]
    for j, (ax, column) in enumerate(zip(axes[0], table.columns, strict=True)):
        ax.bar(range(len(labels)), [row[j] for row in table.probs], color="#3b6ea8")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"{column}  (H = {table.entropies[j] / math.log(2):.2f} bits)", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("probability of the next token")
    fig.suptitle(f"after {table.prompt[-40:]!r}", fontsize=10)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
