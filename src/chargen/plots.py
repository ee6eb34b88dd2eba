"""Training curves of a run (loss and validation bits per character against steps), as a PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

from chargen.atomic import atomic_write_bytes
from chargen.checkpoint import MetricsLog
from chargen.errors import CheckpointError, ConfigError


def plot_curves(run_dir: str | Path, out: str | Path) -> None:
    """Draw train loss and validation loss (bits per char) from ``metrics.jsonl`` into ``out``."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'chargen[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder")
    records = MetricsLog(run).read()
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        raise CheckpointError(f"{run / 'metrics.jsonl'}: no training metrics to plot")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    if train:
        ax.plot(
            [r["step"] for r in train],
            [r["loss"] / math.log(2) for r in train],
            label="train (bits/token)",
            color="#c08a2e",
        )
    if evals:
        ax.plot(
            [r["step"] for r in evals],
            [r["val_bits_per_char"] for r in evals],
            "o-",
            label="validation (bits/char)",
            color="#3b6ea8",
        )
        best = min(evals, key=lambda r: r["val_bits_per_char"])
        ax.annotate(
            f"{best['val_bits_per_char']:.3f}",
            (best["step"], best["val_bits_per_char"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("bits")
    ax.set_title(f"training curves of {run.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buffer.getvalue())
