"""What training tells the user: a progress bar, evaluation lines and samples.

``Reporter`` is silent (the Python API's default); ``ConsoleReporter`` draws a tqdm bar on
stderr (step, loss, chars/s, ETA) and prints evaluations and the seed-style samples on stdout.

The console stays readable on any corpus: at most one evaluation line every
``EVAL_LINE_SECONDS`` (every evaluation is still in ``metrics.jsonl``), and each sample in a
block on at most ``SAMPLE_LINES`` lines, its newlines shown as ``↵`` — about 40 lines a minute
at the default sample cadence (one block every 30 s).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

EVAL_LINE_SECONDS = 3.0
SAMPLE_LINES = 2
SAMPLE_WIDTH = 100


class Reporter:
    """Receives training events; the base class ignores them all."""

    def start(self, info: dict[str, Any]) -> None: ...

    def progress(
        self, step: int, total: int | None, fraction: float, loss: float, chars_per_s: float
    ) -> None: ...

    def evaluation(self, record: dict[str, Any]) -> None: ...

    def samples(
        self, epoch: int, step: int, seed_text: str, texts: dict[float, str], full: bool = False
    ) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class ConsoleReporter(Reporter):
    """Progress bar on stderr; evaluations, samples and messages as plain lines."""

    def __init__(self, out: TextIO | None = None, bar: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self.bar: tqdm | None = None
        self._drawn = 0.0  # when the bar was last redrawn (at most 5 times a second)
        self._eval_printed: float | None = None

    def start(self, info: dict[str, Any]) -> None:
        parts = [f"{k}: {v}" for k, v in info.items()]
        self._print("  ".join(parts))
        if self.bar_enabled:
            # a bare pty reports 0 x 0, which would hide the bar: fall back to 100 x 24
            columns, rows = shutil.get_terminal_size((100, 24))
            self.bar = tqdm(
                total=1000,
                unit="",
                ncols=min(columns, 140),
                nrows=rows,
                file=sys.stderr,
                bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]{postfix}",
            )

    def progress(
        self, step: int, total: int | None, fraction: float, loss: float, chars_per_s: float
    ) -> None:
        now = time.monotonic()
        if self.bar is None or (now - self._drawn < 0.2 and fraction < 1.0):
            return
        self._drawn = now
        self.bar.n = int(min(1.0, fraction) * 1000)
        steps = f"{step}/{total}" if total else f"{step}"
        self.bar.set_postfix_str(
            f"step {steps} loss {loss:.3f} {chars_per_s:,.0f} chars/s", refresh=False
        )
        self.bar.refresh()

    def evaluation(self, record: dict[str, Any]) -> None:
        now = time.monotonic()
        if self._eval_printed is not None and now - self._eval_printed < EVAL_LINE_SECONDS:
            return
        self._eval_printed = now
        self._print(
            f"step {record['step']} epoch {record['epoch']:.2f}: train loss {record['train_loss']:.4f}, "
            f"val {record['val_nats_per_char']:.4f} nats/char ({record['val_bits_per_char']:.4f} bits/char), "
            f"{record['chars_per_s']:,.0f} chars/s, {record['elapsed']:.0f} s"
        )

    def samples(
        self, epoch: int, step: int, seed_text: str, texts: dict[float, str], full: bool = False
    ) -> None:
        """A block of samples: whole, as the book prints them (``full``), or compact."""
        lines = [f"--- samples at step {step} (epoch {epoch}), seed: {seed_text!r}"]
        for temperature, text in texts.items():
            if full:
                lines.append(f"------ temperature: {temperature}")
                lines.append(seed_text + text)
            else:
                lines.extend(compact_sample(f"T={temperature:g}  ", text))
        self._print("\n".join(lines))

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(text, file=self.out, flush=True)
        if self.bar is not None:
            self.bar.refresh()


def compact_sample(label: str, text: str) -> list[str]:
    """``text`` on at most ``SAMPLE_LINES`` lines of ``SAMPLE_WIDTH`` characters after
    ``label``, newlines shown as ``↵`` and the rest cut with ``…``."""
    flat = text.replace("\r", "").replace("\n", "↵")
    width = SAMPLE_WIDTH
    pad = " " * len(label)
    lines = []
    for i in range(SAMPLE_LINES):
        part = flat[i * width : (i + 1) * width]
        if not part:
            break
        lines.append((label if i == 0 else pad) + part)
    if len(flat) > SAMPLE_LINES * width:
        lines[-1] += "…"
    return lines or [label.rstrip()]
