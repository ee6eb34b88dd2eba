"""What follows each optimizer step of ``Trainer.fit``: callbacks, in order.

``fit`` (``loop.py``) takes a step, then hands the trainer and the step's ``StepInfo`` to each
callback of ``trainer.callbacks``. The default list, in the order the loop has always kept:
the progress line, the training record (every ``TRAIN_LOG_EVERY`` steps), the evaluation (every
``eval_every`` steps: it logs, runs the early-stop rule and saves the best weights), the sample
block (every ``sample_every`` seconds) and the checkpoint (every ``checkpoint_every`` steps and
after each evaluation). A callback of one's own is appended to the list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chargen.training.trainer import Trainer

TRAIN_LOG_EVERY = 25


@dataclass
class StepInfo:
    """One optimizer step, as the callbacks see it."""

    loss: float = math.nan  # the step's training loss (NaN: a skipped non-finite batch)
    chars_per_s: float = 0.0  # training throughput over the last ~0.5 s of steps
    train_avg: float = math.nan  # the loss an evaluation record carries (set by TrainRecord)


class Callback(Protocol):
    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        """After the step: ``trainer.step`` counts it, ``trainer.elapsed`` includes it."""
        ...


class Progress:
    """The progress line (bar, loss, speed)."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        fraction = trainer.budget.fraction(trainer.step, trainer.elapsed)
        trainer.reporter.progress(
            trainer.step, trainer.budget.steps, fraction, info.loss, info.chars_per_s
        )


class TrainRecord:
    """Every ``TRAIN_LOG_EVERY`` steps a ``train`` record with the mean loss since the last;
    ``info.train_avg`` is that mean then, and the step's own loss otherwise."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        if trainer.step % TRAIN_LOG_EVERY:
            info.train_avg = info.loss
            return
        info.train_avg = trainer.window_mean()
        trainer.log(
            {
                "kind": "train",
                "step": trainer.step,
                "epoch": trainer.epoch_float(),
                "elapsed": round(trainer.elapsed, 3),
                "loss": info.train_avg,
                "lr": trainer.optimizer.param_groups[0]["lr"],
                "chars_per_s": info.chars_per_s,
            }
        )
        trainer.window_loss, trainer.window_steps = 0.0, 0


class Evaluation:
    """Every ``eval_every`` steps: evaluate, log, apply the early-stop rule, keep the best."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        if trainer.step % trainer.tc.eval_every == 0:
            trainer.record_eval(info.train_avg, info.chars_per_s)


class Samples:
    """A block of samples every ``sample_every`` seconds (0: at epoch ends, as the book)."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        if trainer.samples_due():
            trainer.record_samples()


class Checkpoints:
    """A checkpoint every ``checkpoint_every`` steps and after every evaluation."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        if (
            trainer.step % trainer.tc.checkpoint_every == 0
            or trainer.step % trainer.tc.eval_every == 0
        ):
            trainer.checkpoint()


def default_callbacks() -> list[Callback]:
    return [Progress(), TrainRecord(), Evaluation(), Samples(), Checkpoints()]
