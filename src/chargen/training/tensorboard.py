"""``--log tensorboard``: the run's metric records, as they are logged, also as TensorBoard events.

Events go to ``RUN/tb/`` through ``torch.utils.tensorboard`` (the ``tensorboard`` package:
``pip install 'chargen[tensorboard]'``). What is written, by record kind (``metrics.jsonl``):

====== ======================================================================================
train  ``train/loss`` (nats per token, the mean since the last record), ``train/lr``,
       ``train/chars_per_s`` (every 25 steps)
eval   ``val/nats_per_char``, ``val/bits_per_char``, ``val/nats_per_token``
sample the text, as ``samples/T=<temperature>`` (each block: every ``--sample-every`` s and
       at the end)
notice the text, as ``notices`` (memorising, stopped early)
====== ======================================================================================

A resumed run opens the writer with ``purge_step`` just past its checkpoint's step, so
TensorBoard hides what a killed process logged after it, as ``metrics.jsonl`` is truncated there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chargen.errors import ConfigError

FOLDER = "tb"
SCALARS = {
    "train": {"loss": "train/loss", "lr": "train/lr", "chars_per_s": "train/chars_per_s"},
    "eval": {
        "val_nats_per_char": "val/nats_per_char",
        "val_bits_per_char": "val/bits_per_char",
        "val_nats_per_token": "val/nats_per_token",
    },
}


def check_available() -> None:
    """ConfigError naming the extra unless the tensorboard package can be imported."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--log tensorboard needs the tensorboard package: pip install 'chargen[tensorboard]'"
        ) from None


class TensorBoardLog:
    """A ``SummaryWriter`` in ``run/tb`` fed with metric records (see the module notes)."""

    def __init__(self, run: Path, purge_step: int | None = None) -> None:
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run / FOLDER), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        kind, step = record.get("kind"), int(record.get("step", 0))
        for key, tag in SCALARS.get(str(kind), {}).items():
            if isinstance(record.get(key), int | float):
                self.writer.add_scalar(tag, float(record[key]), step)
        if kind == "sample":
            text = str(record.get("seed_text", "")) + str(record.get("text", ""))
            self.writer.add_text(f"samples/T={record.get('temperature')}", _markdown(text), step)
        if kind == "notice":
            self.writer.add_text("notices", _markdown(str(record.get("text", ""))), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _markdown(text: str) -> str:
    """TensorBoard renders text as Markdown: a fenced block keeps line breaks and symbols."""
    fence = "````" if "```" in text else "```"
    return f"{fence}\n{text}\n{fence}"
