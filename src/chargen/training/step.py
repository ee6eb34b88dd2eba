"""One optimizer step: batches through the network, the loss backward, gradients clipped, and
what a non-finite loss does (stop, or skip the batch and halve the learning rate)."""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from chargen.config import TrainConfig
from chargen.data import StreamBatches, WindowBatches
from chargen.distributed import World
from chargen.errors import TrainingError
from chargen.lines import IGNORE, LineBatches
from chargen.models import LanguageModel, detach_state
from chargen.optimizers import Optimizer
from chargen.reporting import Reporter
from chargen.training.runtime import row_chunks, row_slices, slice_state


class StepMixin:
    """The ``Trainer``'s step; the attributes below are the trainer's (``trainer.py``)."""

    tc: TrainConfig
    world: World
    model: LanguageModel
    net: torch.nn.Module
    optimizer: Optimizer
    batches: StreamBatches | WindowBatches | LineBatches
    device: torch.device
    precision: str
    rows: slice | None
    lines: bool
    carry: tuple[torch.Tensor, ...] | None
    reporter: Reporter
    step: int
    epoch: int
    step_in_epoch: int
    lr_scale: float
    nan_skips: int
    _last_saved: int

    def train_step(self, epoch: int, index: int) -> float:
        """One optimizer step over ``grad_accum`` consecutive batches; returns the mean loss.

        Backward runs on every rank even for a non-finite loss, so no rank waits alone in the
        gradient all-reduce; the decision to skip or stop uses the loss averaged over ranks.
        """
        windows = self.tc.batching == "windows"  # (--lines refuses windows at the start)
        carried = not windows and not self.lines and self.model.carries_state
        bf16 = self.precision == "bf16"
        accum = self.tc.grad_accum
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for j in range(accum):
            x, y = self.batches.batch(epoch, index * accum + j, self.rows)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            rows = x.shape[0]
            targets = float((y != IGNORE).sum()) if self.lines else 0.0  # items carry padding
            slices = row_slices(rows, row_chunks(self.model, rows, x.shape[1], self.device))
            states = []
            for c, part in enumerate(slices):
                final = j == accum - 1 and c == len(slices) - 1
                no_sync = self.world.enabled and not final
                sync = self.net.no_sync() if no_sync else nullcontext()  # type: ignore[operator]
                with sync, torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
                    if windows:
                        logits, _ = self.net(x[part], None)
                        loss = F.cross_entropy(logits[:, -1].float(), y[part])
                    else:
                        carry = slice_state(self.carry, part) if carried else None
                        logits, state = self.net(x[part], carry)
                        flat = logits.reshape(-1, logits.shape[-1]).float()
                        loss = F.cross_entropy(flat, y[part].reshape(-1), ignore_index=IGNORE)
                        states.append(detach_state(state))
                    # this slice's part of the batch mean (of its targets: items have padding)
                    share = (
                        float((y[part] != IGNORE).sum()) / targets
                        if self.lines
                        else (part.stop - part.start) / rows
                    )
                    (loss / accum if share == 1 else loss * share / accum).backward()
                total += float(loss.detach()) * share
            if carried:
                joined = (torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
                self.carry = states[0] if len(states) == 1 else tuple(joined)
        value = self.world.mean(total / accum, self.device)
        limit = self.tc.grad_clip if self.tc.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit))
        if not math.isfinite(value) or not math.isfinite(grad_norm):
            return self._non_finite(value if not math.isfinite(value) else grad_norm)
        self.optimizer.step()
        self._consecutive_skips = 0
        return value

    def _compiled_step(self) -> float:
        """``train_step`` under ``--compile``: a compiler failure is one line, not a traceback."""
        try:
            return self.train_step(self.epoch, self.step_in_epoch)
        except Exception as exc:
            if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise TrainingError(
                f"--compile failed at step {self.step + 1} ({type(exc).__name__}: {first}); "
                "train without --compile"
            ) from None

    _consecutive_skips = 0
    MAX_CONSECUTIVE_SKIPS = 10

    def _non_finite(self, value: float) -> float:
        """A NaN / inf loss or gradient: stop (default) or skip the batch and halve the learning rate."""
        where = f"at step {self.step + 1}"
        if self.tc.on_nan == "skip" and self._consecutive_skips < self.MAX_CONSECUTIVE_SKIPS:
            self.optimizer.zero_grad(set_to_none=True)
            self._consecutive_skips += 1
            self.nan_skips += 1
            self.lr_scale *= 0.5
            self.carry = None
            self.reporter.message(
                f"non-finite loss or gradient ({value}) {where}: batch skipped, learning rate halved"
            )
            return float("nan")
        raise TrainingError(
            f"loss or gradient became {value} {where}; stopped, the last good checkpoint "
            f"(step {self._last_saved}) is kept; try a lower --lr, --grad-clip 1 or --on-nan skip"
        )
