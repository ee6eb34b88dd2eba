"""``Trainer.fit``: the loop that takes optimizer steps until the budget, a stop rule or a
signal ends it, firing the callbacks (``callbacks.py``) after each step.

    announce the run
    until the budget, stop_at_step, an early stop or a signal:
        an epoch ended?   evaluate (long epochs), samples (sample_every 0), checkpoint
        one step          learning rate from the schedule, the step, counters and the clock
        callbacks         progress, train record, evaluation, samples, checkpoint
        the vote          every rank stops if any rank's budget, stop rule or signal says so
    wrap up               a last evaluation and samples, the checkpoint, the early-stop notice
"""

from __future__ import annotations

import math
import signal
import time
from typing import TYPE_CHECKING, Any, cast

import torch

from chargen.models import count_parameters
from chargen.training.callbacks import StepInfo
from chargen.training.runtime import StopSignals
from chargen.training.schedule import lr_factor
from chargen.training.tensorboard import TensorBoardLog

if TYPE_CHECKING:
    from pathlib import Path

    from chargen.config import RunConfig, TrainConfig
    from chargen.data import StreamBatches, WindowBatches
    from chargen.distributed import World
    from chargen.lines import LineBatches
    from chargen.models import LanguageModel
    from chargen.optimizers import Optimizer
    from chargen.reporting import Reporter
    from chargen.tokenizer import Tokenizer
    from chargen.training.callbacks import Callback
    from chargen.training.schedule import Budget
    from chargen.training.trainer import Trainer, TrainingInterrupted, TrainResult

EPOCH_EVAL_STEPS = 100  # an epoch this long ends with an evaluation; shorter ones follow eval_every


class Throughput:
    """Training tokens per second of step time, over windows of about 0.5 s."""

    def __init__(self) -> None:
        self.seconds, self.tokens, self.rate = 0.0, 0, 0.0

    def add(self, seconds: float, tokens: int) -> float:
        self.seconds += seconds
        self.tokens += tokens
        self.rate = self.tokens / max(self.seconds, 1e-9)
        if self.seconds > 0.5:
            self.seconds, self.tokens = 0.0, 0
        return self.rate


class LoopMixin:
    """The ``Trainer``'s loop; the trainer (``trainer.py``) holds the state it reads."""

    # the trainer's state that the loop reads and moves
    tc: TrainConfig
    config: RunConfig
    world: World
    run: Path
    tb: TensorBoardLog | None
    model: LanguageModel
    tokenizer: Tokenizer
    optimizer: Optimizer
    batches: StreamBatches | WindowBatches | LineBatches
    budget: Budget
    reporter: Reporter
    device: torch.device
    precision: str
    lines: bool
    callbacks: list[Callback]
    step: int
    epoch: int
    step_in_epoch: int
    steps_per_epoch: int
    elapsed: float
    tokens_seen: int
    window_loss: float
    window_steps: int
    lr_scale: float
    last_sample_elapsed: float | None
    stopped_early: str | None
    carry: tuple[torch.Tensor, ...] | None
    _last_saved: int
    _last_eval_step: int

    if TYPE_CHECKING:  # the trainer's methods the loop calls

        def train_step(self, epoch: int, index: int) -> float: ...
        def _compiled_step(self) -> float: ...
        def window_mean(self) -> float: ...
        def record_eval(self, train_loss: float, chars_per_s: float) -> None: ...
        def record_samples(self, full: bool = False) -> None: ...
        def checkpoint(self) -> None: ...
        def log(self, record: dict[str, Any]) -> None: ...
        def result(self) -> TrainResult: ...
        def _split_info(self) -> dict[str, Any]: ...

    def fit(self, stop_at_step: int | None = None) -> TrainResult:
        """Train until the budget (or ``stop_at_step``) is reached; checkpoint, evaluate, sample."""
        if self.tc.log == "tensorboard" and self.world.is_main:
            # a resume hides events a killed process logged after the checkpoint's step
            self.tb = TensorBoardLog(self.run, purge_step=self.step + 1 if self.step else None)
        try:
            return self._fit(stop_at_step)
        finally:
            if self.tb is not None:
                self.tb.close()
                self.tb = None

    def _fit(self, stop_at_step: int | None) -> TrainResult:
        self._announce()
        self.model.train()
        self.last_sample_elapsed = self.elapsed  # the first block comes sample_every s in
        signals = StopSignals()
        meter = Throughput()
        clock = time.perf_counter() - self.elapsed  # the clock goes on from a resume
        info = StepInfo()
        with signals.installed():
            try:
                done = self.budget.done(self.step, self.elapsed)
                while not done and (stop_at_step is None or self.step < stop_at_step):
                    if self.step_in_epoch >= self.steps_per_epoch:
                        self._end_epoch(self.window_mean(), info.chars_per_s)
                    info = self._advance(meter, clock)
                    for callback in self.callbacks:
                        callback.on_step(cast("Trainer", self), info)  # the mixin is a Trainer
                    done = self._vote(signals)
            finally:
                self.reporter.close()
        self._wrap_up(info)
        return self.result()

    def _advance(self, meter: Throughput, clock: float) -> StepInfo:
        """One optimizer step at the schedule's learning rate, and the counters it moves."""
        scale = lr_factor(self.tc, self.step, self.budget.fraction(self.step, self.elapsed))
        for group in self.optimizer.param_groups:
            group["lr"] = self.tc.lr * scale * self.lr_scale
        start = time.perf_counter()
        loss = (
            self._compiled_step()
            if self.tc.compile
            else self.train_step(self.epoch, self.step_in_epoch)
        )
        seconds = time.perf_counter() - start
        self.step += 1
        self.step_in_epoch += 1
        tokens = self.batches.tokens_per_step * self.tc.grad_accum  # all ranks
        self.tokens_seen += tokens
        if math.isfinite(loss):  # a skipped batch (--on-nan skip) has no loss
            self.window_loss += loss
            self.window_steps += 1
        self.elapsed = time.perf_counter() - clock
        return StepInfo(loss=loss, chars_per_s=meter.add(seconds, tokens))

    def _vote(self, signals: StopSignals) -> bool:
        """Every rank takes the same decision: stop if any rank's budget, early stop or signal
        says so; a signal saves a checkpoint and raises ``TrainingInterrupted``."""
        budget_done, signum = self.world.any(
            float(self.budget.done(self.step, self.elapsed) or bool(self.stopped_early)),
            float(signals.signum or 0),
            device=self.device,
        )
        if signum:
            self.checkpoint()
            raise self._interrupted(int(signum))
        return bool(budget_done)

    def _wrap_up(self, info: StepInfo) -> None:
        """The end of an epoch, or of the budget: a last evaluation (unless one just ran) and
        samples, then the checkpoint and the early-stop notice."""
        if self.step_in_epoch >= self.steps_per_epoch and not self.stopped_early:
            self._end_epoch(info.loss, info.chars_per_s, final=True)
        else:
            if self._last_eval_step != self.step:
                self.record_eval(info.loss, info.chars_per_s)
            self.record_samples(full=True)
        self.checkpoint()
        if self.stopped_early:
            self.log({"kind": "notice", "step": self.step, "text": self.stopped_early})
            self.reporter.message(self.stopped_early)

    def _end_epoch(self, train_loss: float, chars_per_s: float, final: bool = False) -> None:
        """A long epoch ends with an evaluation and (``sample_every`` 0) samples, as the book's
        program does; a short one (a small corpus) leaves both to the step and sample clocks."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.carry = None
        long_epoch = self.steps_per_epoch >= min(EPOCH_EVAL_STEPS, self.tc.eval_every)
        if (long_epoch or final) and self._last_eval_step != self.step:
            self.record_eval(train_loss, chars_per_s)
        if self.tc.sample_every == 0 or final:
            self.record_samples(full=final)
        self.checkpoint()

    def _announce(self) -> None:
        self._last_saved = self.step
        self.reporter.start(
            {
                "parameters": f"{count_parameters(self.model):,}",
                "vocab": self.tokenizer.vocab_size,
                **self._split_info(),
                "steps/epoch": self.steps_per_epoch,
                "budget": self._budget_text(),
                "device": self.device.type,
                "precision": self.precision,
                "threads": torch.get_num_threads(),
                "processes": self.world.size,
            }
        )

    def _budget_text(self) -> str:
        if self.budget.seconds is not None:
            return f"{self.budget.seconds / 60:g} min"
        epochs = self.budget.steps / self.steps_per_epoch if self.budget.steps else 0
        return f"{self.budget.steps:,} steps ({epochs:.3g} epochs)"

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        from chargen.training.trainer import TrainingInterrupted

        name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        code = 130 if signum == signal.SIGINT else 143
        return TrainingInterrupted(
            f"{name}: stopped after step {self.step}, checkpoint saved in {self.run}; "
            f"continue with: chargen train {self.config.data.source} --out {self.run} --resume",
            code,
        )
