"""The seed's lesson on the user's own model: the next-token distribution at several temperatures.

For a prompt, ``next_token_table`` gives the model's top candidates with their probability at
each temperature ``T`` (``softmax(logits / T)``, T = 0 greedy) and the entropy at each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chargen.errors import ConfigError
from chargen.generate import encode_prompt, read_prompt, start_token
from chargen.models import LanguageModel
from chargen.sampling import SamplingConfig, entropy, process_logits
from chargen.tokenizer import Tokenizer


@dataclass
class NextTokenTable:
    """Top candidates (by probability at T = 1) and their probabilities at each temperature."""

    prompt: str
    temperatures: list[float]
    tokens: list[str]
    probs: list[list[float]]  # probs[i][j]: token i at temperature j
    entropies: list[float]  # nats, one per temperature

    def render(self) -> str:
        """A plain-text table; entropies in bits."""
        head = f"{'token':>10} " + " ".join(
            f"{'T=' + format(t, 'g'):>9}" for t in self.temperatures
        )
        lines = [f"next token after {self.prompt[-40:]!r}", head, "-" * len(head)]
        for token, row in zip(self.tokens, self.probs, strict=True):
            lines.append(f"{token!r:>10} " + " ".join(f"{p:9.4f}" for p in row))
        lines.append("-" * len(head))
        lines.append(
            f"{'entropy':>10} " + " ".join(f"{h / math.log(2):7.3f} b" for h in self.entropies)
        )
        return "\n".join(lines)


@torch.inference_mode()
def next_token_table(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    temperatures: list[float],
    top: int = 10,
    unknown: str = "warn",
) -> NextTokenTable:
    """Distribution of the token after ``prompt`` at each temperature (top ``top`` candidates)."""
    model.eval()
    ids = encode_prompt(tokenizer, prompt, unknown) or [start_token(tokenizer)]
    state = read_prompt(model, ids)
    logits, _ = model(torch.tensor([[ids[-1]]], device=model.head.weight.device), state)
    logits = logits[:, -1].float().cpu()
    none = torch.zeros((1, 0), dtype=torch.long)
    per_t = [
        process_logits(logits, none, SamplingConfig(temperature=t).validate()) for t in temperatures
    ]
    order = torch.argsort(torch.softmax(logits, -1)[0], descending=True, stable=True)[:top].tolist()
    return NextTokenTable(
        prompt=prompt,
        temperatures=list(temperatures),
        tokens=[tokenizer.decode([i]) for i in order],
        probs=[[float(lp[0, i].exp()) for lp in per_t] for i in order],
        entropies=[float(entropy(lp)[0]) for lp in per_t],
    )


def plot_table(table: NextTokenTable, path: str) -> None:
    """Bar charts of the top candidates, one panel per temperature (matplotlib, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'chargen[plot]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chargen.atomic import atomic_write_bytes

    n = len(table.temperatures)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), sharey=True, squeeze=False)
    labels = [repr(t)[1:-1] or "''" for t in table.tokens]
    for j, (ax, t) in enumerate(zip(axes[0], table.temperatures, strict=True)):
        ax.bar(range(len(labels)), [row[j] for row in table.probs], color="#3b6ea8")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"T = {t:g}  (H = {table.entropies[j] / math.log(2):.2f} bits)", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("probability of the next token")
    fig.suptitle(f"after {table.prompt[-40:]!r}", fontsize=10)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
