"""The ``Trainer``: a run's state (model, optimizer, batches, clock, best so far), its
checkpoints, evaluations and the loop ``fit`` that drives them; the step and the sample blocks
are in ``step.py`` and ``samples.py``.

The loop is deterministic for a fixed seed and thread count, and a resumed run reproduces an
uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from chargen import checkpoint as ckpt
from chargen.data import StreamBatches, WindowBatches, split_ids
from chargen.distributed import World
from chargen.early_stop import EarlyStop
from chargen.errors import ChargenError, TrainingError
from chargen.evaluate import EvalResult, EvalSet, token_char_lengths
from chargen.lines import BOUNDARY, LineBatches, item_bounds, split_items
from chargen.models import LanguageModel, build_model
from chargen.reporting import Reporter
from chargen.tokenizer import Tokenizer
from chargen.training.callbacks import Callback, default_callbacks
from chargen.training.loop import LoopMixin
from chargen.training.runtime import (
    compile_for_training,
    resolve_precision,
    run_device,
)
from chargen.training.samples import SampleMixin, seed_text_start
from chargen.training.schedule import make_budget, make_optimizer
from chargen.training.step import StepMixin
from chargen.training.tensorboard import TensorBoardLog, check_available


class TrainingInterrupted(ChargenError):
    """SIGINT or SIGTERM: the current step finished and a checkpoint was written."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TrainResult:
    """How a call to ``fit`` ended."""

    run_dir: Path
    step: int
    epoch: float
    elapsed: float
    val: EvalResult | None
    best_val_nats_per_char: float | None
    best: str = ""  # "best 2.148 nats/char at step 60, 1.1 s"
    stopped_early: str | None = None


class Trainer(LoopMixin, StepMixin, SampleMixin):
    """Owns the model, optimizer, batches and run directory of one training run."""

    def __init__(
        self,
        run: Path,
        config: ckpt.RunConfig,
        tokenizer: Tokenizer,
        ids: np.ndarray,
        corpus_sha: str,
        reporter: Reporter | None = None,
        world: World | None = None,
    ) -> None:
        self.run = run
        self.config = config
        self.tc = config.train
        self.tokenizer = tokenizer
        self.world = world or World()
        # only rank 0 reports, logs and writes
        self.reporter = (reporter or Reporter()) if self.world.is_main else Reporter()
        self.corpus_sha = corpus_sha
        self.device = run_device(self.tc.device, self.world)
        if self.tc.threads:
            torch.set_num_threads(self.tc.threads)
        self.precision = resolve_precision(self.tc.precision, self.device)
        if tokenizer.vocab_size < 2:
            raise TrainingError(
                f"the text has a vocabulary of {tokenizer.vocab_size} symbol; a language model needs at least 2"
            )
        self.lines = config.data.lines
        if self.lines:
            self._init_items(ids)
        elif self.tc.batching == "windows":
            self.train_ids, self.val_ids = split_ids(ids, self.tc.val_fraction)
            self.batches: StreamBatches | WindowBatches | LineBatches = WindowBatches(
                self.train_ids,
                self.tc.batch_size,
                self.tc.maxlen,
                self.tc.window_step,
                self.tc.seed,
            )
        else:
            self.train_ids, self.val_ids = split_ids(ids, self.tc.val_fraction)
            self.batches = StreamBatches(
                self.train_ids, self.tc.batch_size, self.tc.seq_len, self.tc.seed
            )
        self.rows = self.world.rows(self.batches.batch_size) if self.world.enabled else None
        self.steps_per_epoch = max(1, self.batches.steps_per_epoch // self.tc.grad_accum)
        self.char_lengths = token_char_lengths(tokenizer.vocab)
        self.eval_set = EvalSet.of_run(ids, tokenizer.vocab, self.tc, self.lines)
        torch.manual_seed(self.tc.seed)
        self.model: LanguageModel = build_model(config.model).to(self.device)
        self.net: torch.nn.Module = self.model
        if self.world.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.tc.compile:
            self.net = compile_for_training(self.net, self.device)
        self.optimizer = make_optimizer(self.model, self.tc)
        self.budget = make_budget(self.tc, self.steps_per_epoch)
        self.metrics = ckpt.MetricsLog(run)
        self.tb: TensorBoardLog | None = None  # opened by fit with --log tensorboard
        if self.tc.log == "tensorboard" and self.world.is_main:
            check_available()  # refused before the run folder is touched
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.elapsed = 0.0
        self.tokens_seen = 0
        self.early = EarlyStop(self.tc.patience, self.tc.patience_share)
        self.stopped_early: str | None = None
        self.last_val: EvalResult | None = None
        self.last_sample_elapsed: float | None = None
        self._last_block: tuple[int, str, dict[float, str]] | None = None
        self.carry: tuple[torch.Tensor, ...] | None = None
        self.lr_scale = 1.0  # halved at each skipped non-finite step (--on-nan skip)
        self.nan_skips = 0
        # the losses summed since the last train record, and how many (saved: a resume goes on)
        self.window_loss, self.window_steps = 0.0, 0
        self.seed_start = seed_text_start(self.tc.seed, len(self.train_ids))
        self.callbacks: list[Callback] = default_callbacks()  # after each step, in order

    def _init_items(self, ids: np.ndarray) -> None:
        """``--lines``: whole items in batches, a fixed random share held out (lines.py)."""
        if self.tc.batching == "windows":
            raise TrainingError("--lines trains whole items; --batching windows does not apply")
        if BOUNDARY not in self.tokenizer.vocab or not self.tokenizer.frames_lines:
            raise TrainingError("--lines works with --tokenizer char or word")
        self.bounds = item_bounds(ids, self.tokenizer.vocab.index(BOUNDARY))
        self.train_items, self.val_items = split_items(len(self.bounds) - 1, self.tc.val_fraction)
        self.train_ids = self.val_ids = ids
        self.batches = LineBatches(
            ids, self.bounds, self.train_items, self.tc.batch_size, self.tc.seed
        )

    @property
    def best_val(self) -> float | None:
        return self.early.best

    # ----------------------------------------------------------------- state
    def state_meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "elapsed": self.elapsed,
            "tokens_seen": self.tokens_seen,
            "best_val": self.best_val,
            "early_stop": self.early.state(),
            "lr_scale": self.lr_scale,
            "nan_skips": self.nan_skips,
            "train_window": [self.window_loss, self.window_steps],
            "corpus_sha256": self.corpus_sha,
            "batch_size": self.batches.batch_size,
            "world_size": self.world.size,
        }

    def save_checkpoint(self) -> None:
        """Every rank takes part (the carried state and RNG states are gathered); rank 0 writes."""
        extra: dict[str, torch.Tensor] = {}
        for i, s in enumerate(self.carry or ()):
            extra[f"carry.{i}"] = self.world.gather_rows(s, dim=1)
        rng = torch.get_rng_state()
        extra["rng_all"] = self.world.gather_rows(rng.to(self.device)[None], dim=0).cpu()
        if self.device.type == "cuda":
            cuda_rng = torch.cuda.get_rng_state(self.device).to(self.device)[None]
            extra["cuda_rng_all"] = self.world.gather_rows(cuda_rng, dim=0).cpu()
        if self.world.is_main:
            ckpt.save_weights(self.run / ckpt.WEIGHTS, self.model, {"step": self.step})
            ckpt.save_trainer_state(self.run, self.model, self.optimizer, self.state_meta(), extra)

    def restore(self) -> None:
        """Load ``trainer.safetensors`` into this trainer (used by ``--resume``)."""
        saved = ckpt.load_trainer_state(self.run)
        meta = saved.meta
        if meta.get("corpus_sha256") != self.corpus_sha:
            raise TrainingError(
                f"{self.run}: the corpus differs from the one this run was trained on; "
                "resume with the same source and options"
            )
        if meta.get("batch_size") != self.batches.batch_size:
            raise TrainingError(f"{self.run}: the batch layout changed since the run started")
        ckpt.restore_model(self.model, saved, self.run)
        try:
            self.optimizer.load_state_dict(saved.optimizer)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ckpt.CheckpointError(
                f"{self.run / ckpt.TRAINER}: optimizer state does not fit: {exc}"
            ) from None
        self._restore_rng(saved.extra, int(meta.get("world_size", 1)), int(meta["step"]))
        self.step = int(meta["step"])
        self.epoch = int(meta["epoch"])
        self.step_in_epoch = int(meta["step_in_epoch"])
        self.elapsed = float(meta["elapsed"])
        self.tokens_seen = int(meta["tokens_seen"])
        self.early.load({"best": meta.get("best_val"), **meta.get("early_stop", {})})
        self.lr_scale = float(meta.get("lr_scale", 1.0))
        self.nan_skips = int(meta.get("nan_skips", 0))
        loss_sum, steps = meta.get("train_window", (0.0, 0))
        self.window_loss, self.window_steps = float(loss_sum), int(steps)
        carry = [saved.extra[k] for k in sorted(saved.extra) if k.startswith("carry.")]
        rows = self.rows or slice(None)
        self.carry = tuple(c[:, rows].contiguous().to(self.device) for c in carry) or None
        if self.world.is_main:
            self.metrics.truncate_after(self.step)

    def _restore_rng(self, extra: dict[str, torch.Tensor], saved_world: int, step: int) -> None:
        """Each rank's own RNG state when the world size is unchanged, else a fresh per-rank seed."""
        if saved_world == self.world.size and "rng_all" in extra:
            torch.set_rng_state(extra["rng_all"][self.world.rank].contiguous())
            if self.device.type == "cuda" and "cuda_rng_all" in extra:
                torch.cuda.set_rng_state(
                    extra["cuda_rng_all"][self.world.rank].contiguous(), self.device
                )
        else:
            torch.manual_seed(self.tc.seed + 1_000_003 * step + self.world.rank)

    def evaluate(self) -> EvalResult:
        """The validation loss now (``EvalSet``: the run's split, scheme and token cap)."""
        return self.eval_set.evaluate(self.model, self.tc.eval_max_tokens)

    # ----------------------------------------------------------------- events
    def record_eval(self, train_loss: float, chars_per_s: float) -> None:
        """Rank 0 evaluates, logs and keeps the best weights; other ranks go on to the next step."""
        self._last_eval_step = self.step
        if not self.world.is_main:
            return
        result = self.evaluate()
        self.last_val = result
        record = {
            "kind": "eval",
            "step": self.step,
            "epoch": self.epoch_float(),
            "elapsed": round(self.elapsed, 3),
            "train_loss": train_loss,
            "val_nats_per_char": result.nats_per_char,
            "val_bits_per_char": result.bits_per_char,
            "val_nats_per_token": result.nats_per_token,
            "lr": self.optimizer.param_groups[0]["lr"],
            "chars_per_s": chars_per_s,
            "tokens_seen": self.tokens_seen,
        }
        self.log(record)
        self.reporter.evaluation(record)
        verdict = self.early.update(
            result.nats_per_char,
            self.step,
            self.elapsed,
            self.budget.fraction(self.step, self.elapsed),
        )
        if verdict.new_best:
            ckpt.save_weights(
                self.run / ckpt.BEST,
                self.model,
                {"step": self.step, "val_nats_per_char": result.nats_per_char},
            )
        if verdict.notice:
            self.log({"kind": "notice", "step": self.step, "text": verdict.notice})
            self.reporter.message(f"note: {verdict.notice}")
        budget_over = self.budget.done(self.step, self.elapsed)  # then it is no early stop
        if verdict.stop and not self.stopped_early and not budget_over:  # the first reason stands
            self.stopped_early = verdict.stop

    def window_mean(self) -> float:
        """The mean training loss since the last train record (0 before any step)."""
        return self.window_loss / max(self.window_steps, 1)

    def epoch_float(self) -> float:
        return round(self.epoch + self.step_in_epoch / self.steps_per_epoch, 4)

    def result(self) -> TrainResult:
        """How the run stands: what ``fit`` returns."""
        return TrainResult(
            self.run,
            self.step,
            self.epoch_float(),
            self.elapsed,
            self.last_val,
            self.best_val,
            self.early.summary(),
            self.stopped_early,
        )

    _last_eval_step = -1

    def _split_info(self) -> dict[str, Any]:
        if not self.lines:
            return {
                "train tokens": f"{len(self.train_ids):,}",
                "val tokens": f"{len(self.val_ids):,}",
            }
        return {"items": f"{len(self.train_items):,} train, {len(self.val_items):,} val (--lines)"}

    def log(self, record: dict[str, Any]) -> None:
        """A record in ``metrics.jsonl`` (and TensorBoard), by rank 0 only."""
        if self.world.is_main:
            self.metrics.append(record)
            if self.tb is not None:
                self.tb.write(record)

    def checkpoint(self) -> None:
        """Save the checkpoint now."""
        self.save_checkpoint()
        self._last_saved = self.step
