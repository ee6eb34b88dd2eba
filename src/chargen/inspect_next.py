"""The seed's lesson on the user's own model: the next-token distribution, reshaped.

``next_distribution`` is the one place the distribution after a prompt is computed, with the
chain's X-ray (``inspect``, the server's ``/v1/distribution`` and the page's charts use it). ``next_token_table`` gives the
top candidates at each temperature ``T`` (``softmax(logits / T)``, T = 0 greedy);
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
