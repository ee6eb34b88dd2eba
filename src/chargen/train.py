"""The training loop: batches in, loss down, checkpoints, evaluations and samples out.

``start_run`` begins a run in a new folder; ``resume_run`` continues one from its
``trainer.safetensors``. Both hand a ``Trainer`` the token ids and run ``fit``. The loop is
deterministic for a fixed seed and thread count, and a resumed run reproduces an
uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from chargen import auto, optimizers
from chargen import checkpoint as ckpt
from chargen.config import DataConfig, ModelConfig, TrainConfig, check_compatible
from chargen.corpus import load_corpus
from chargen.data import StreamBatches, WindowBatches, smallest_id_dtype, split_ids
from chargen.distributed import World, close_world, init_world
from chargen.early_stop import EarlyStop
from chargen.errors import ChargenError, TrainingError
from chargen.evaluate import EvalResult, evaluate_streams, evaluate_windows, token_char_lengths
from chargen.generate import generate
from chargen.lines import (
    BOUNDARY,
    IGNORE,
    LineBatches,
    evaluate_items,
    item_bounds,
    items_of,
    lines_text,
    split_items,
)
from chargen.models import LanguageModel, State, build_model, count_parameters, detach_state
from chargen.prepare import is_prepared, open_prepared
from chargen.reporting import Reporter
from chargen.sampling import SamplingConfig
from chargen.tokenizer import Tokenizer, build_tokenizer, load_tokenizer

SEED_TEXT_CHARS = 60
TRAIN_LOG_EVERY = 25
LINE_SAMPLES = 8  # items drawn per temperature in a --lines run's sample block
EPOCH_EVAL_STEPS = 100  # an epoch this long ends with an evaluation; shorter ones follow eval_every


class TrainingInterrupted(ChargenError):
    """SIGINT or SIGTERM: the current step finished and a checkpoint was written."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def seed_text_start(seed: int, train_tokens: int) -> int:
    """Where the window of ``SEED_TEXT_CHARS`` tokens that training samples continue starts
    (also the playground's default prompt, ``server/seed_text.py``)."""
    return int(np.random.default_rng(seed).integers(0, max(1, train_tokens - SEED_TEXT_CHARS)))


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


@dataclass
class Budget:
    """When to stop: after ``steps`` steps, or after ``seconds`` of training time."""

    steps: int | None
    seconds: float | None

    def fraction(self, step: int, elapsed: float) -> float:
        """Progress in [0, 1]: what the learning-rate schedule follows."""
        if self.steps is not None:
            return min(1.0, step / self.steps)
        assert self.seconds is not None
        return min(1.0, elapsed / self.seconds)

    def done(self, step: int, elapsed: float) -> bool:
        if self.steps is not None:
            return step >= self.steps
        assert self.seconds is not None
        return elapsed >= self.seconds


def make_budget(config: TrainConfig, steps_per_epoch: int) -> Budget:
    """The first of steps, epochs, minutes that is set (one epoch when none is)."""
    if config.steps is not None:
        return Budget(config.steps, None)
    if config.epochs is not None:
        return Budget(max(1, math.ceil(config.epochs * steps_per_epoch)), None)
    if config.minutes is not None:
        return Budget(None, config.minutes * 60.0)
    return Budget(steps_per_epoch, None)


def lr_factor(config: TrainConfig, step: int, fraction: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from 1 to ``min_lr_ratio`` over the budget."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> optimizers.Optimizer:
    """AdamW (decay on matrices only), Adam, SGD, or the seed's RMSprop (Keras defaults: rho 0.9, eps 1e-7)."""
    if config.optimizer == "rmsprop":
        return optimizers.RMSprop(model.parameters(), lr=config.lr, alpha=0.9, eps=1e-7)
    if config.optimizer == "sgd":
        return optimizers.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adam":
        return optimizers.Adam(groups, lr=config.lr)
    return optimizers.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))


# glibc's largest dynamic mmap threshold: a bigger block is mapped afresh (and its pages zeroed)
# on every step instead of being reused
WORKSPACE_BUDGET = 32 * 2**20
# thinner slices lose more to narrow matmuls than they save (LSTM 1024: x0.7 at 8 rows)
MIN_SLICE_ROWS = 16


def row_chunks(model: LanguageModel, rows: int, length: int, device: torch.device) -> int:
    """How many row slices a training batch is run in, so oneDNN's LSTM workspace fits the budget.

    On the CPU that workspace holds about 15.4 x rows x length x hidden float32 values per layer
    (measured, torch 2.x). Slices give the same gradient (each slice's mean loss weighted by its
    share of the rows) in less memory and faster (LSTM 512, 32 x 64: x1.1), but only when slices
    of at least ``MIN_SLICE_ROWS`` rows fit the budget: slices still above it, or thinner ones,
    ran slower (LSTM 1024, 32 x 64 in 2 slices: x0.8-0.95). 1 on other devices and families.
    """
    config = model.config
    if device.type != "cpu" or config.family != "lstm" or not torch.backends.mkldnn.is_available():
        return 1
    workspace = 15.4 * 4 * rows * length * config.hidden_size * config.num_layers
    needed = math.ceil(workspace / WORKSPACE_BUDGET)
    return needed if 1 < needed <= rows // MIN_SLICE_ROWS else 1


def row_slices(rows: int, chunks: int) -> list[slice]:
    """``rows`` cut into ``chunks`` contiguous slices whose sizes differ by at most one."""
    bounds = [round(i * rows / chunks) for i in range(chunks + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def slice_state(state: State | None, part: slice) -> State | None:
    """Rows ``part`` of a carried (layers, B, hidden) state, cut from its autograd history."""
    return None if state is None else tuple(s[:, part].detach() for s in state)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere.

    Native: a CUDA device that supports bf16, or a CPU with AVX-512 BF16 or AMX and oneDNN.
    There bf16 autocast trained the default preset 1.3-1.45x more steps per second on 2 cores
    (matmuls and oneDNN's LSTM in bf16; weights, optimizer state and the loss stay fp32), and
    reached a lower validation loss at equal time (benchmarks/RESULTS.md).
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch >= 2.3
    native = any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return (
        "bf16"
        if device.type == "cpu" and native and torch.backends.mkldnn.is_available()
        else "fp32"
    )


def compile_for_training(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(net)`` (inductor); on the CPU first check that a C++ compiler is there."""
    if device.type == "cpu":
        compiler = os.environ.get("CXX") or "c++"
        if shutil.which(compiler) is None and shutil.which("g++") is None:
            raise TrainingError(
                f"--compile on the CPU needs a C++ compiler ({compiler} or g++), none is on PATH; "
                "install one or leave out --compile"
            )
    return cast(torch.nn.Module, torch.compile(net))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: no CUDA device is available; use --device cpu")
    return torch.device(name)


def run_device(name: str, world: World) -> torch.device:
    """The device a rank trains on: ``name`` resolved, a CUDA rank on its local GPU."""
    device = resolve_device(name)
    return (
        torch.device("cuda", world.local_rank)
        if device.type == "cuda" and world.enabled
        else device
    )


def text_checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _StopSignals:
    """Turns SIGINT / SIGTERM into a flag the loop checks after each step; a second SIGINT aborts."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self.signum is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signum = signum

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class Trainer:
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
        torch.manual_seed(self.tc.seed)
        self.model: LanguageModel = build_model(config.model).to(self.device)
        self.net: torch.nn.Module = self.model
        if self.world.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if self.tc.compile:
            self.net = compile_for_training(self.net, self.device)
        self.optimizer = make_optimizer(self.model, self.tc)
        self.budget = make_budget(self.tc, self.steps_per_epoch)
        self.metrics = ckpt.MetricsLog(run)
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
        self.seed_start = seed_text_start(self.tc.seed, len(self.train_ids))

    def _init_items(self, ids: np.ndarray) -> None:
        """``--lines``: whole items in batches, a fixed random share held out (lines.py)."""
        if self.tc.batching == "windows":
            raise TrainingError("--lines trains whole items; --batching windows does not apply")
        if BOUNDARY not in self.tokenizer.vocab or self.tokenizer.kind == "bpe":
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

    # ----------------------------------------------------------------- steps
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

    def evaluate(self) -> EvalResult:
        if self.lines:
            return evaluate_items(
                self.model,
                self.val_ids,
                self.bounds,
                self.val_items,
                self.char_lengths,
                max_tokens=self.tc.eval_max_tokens,
            )
        if self.tc.batching == "windows":
            return evaluate_windows(
                self.model,
                self.val_ids,
                self.char_lengths,
                maxlen=self.tc.maxlen,
                step=self.tc.window_step,
                max_tokens=self.tc.eval_max_tokens,
            )
        return evaluate_streams(
            self.model, self.val_ids, self.char_lengths, max_tokens=self.tc.eval_max_tokens
        )

    def sample_texts(self) -> tuple[str, dict[float, str]]:
        """From one fixed window of the training text, a sample at each configured temperature."""
        seed_ids = self.train_ids[self.seed_start : self.seed_start + SEED_TEXT_CHARS]
        seed_text = self.tokenizer.decode(np.asarray(seed_ids, dtype=np.int64))
        texts: dict[float, str] = {}
        if self.lines:  # whole items, each from a fresh state, one per line
            for temperature in self.tc.sample_temperatures:
                samples = generate(
                    self.model,
                    self.tokenizer,
                    BOUNDARY,
                    length=min(self.tc.sample_length, 200),
                    sampling=SamplingConfig(temperature=float(temperature)),
                    num_samples=LINE_SAMPLES,
                    seed=self.tc.seed,
                    stop=[BOUNDARY],
                )
                texts[float(temperature)] = BOUNDARY.join(s.text for s in samples)
            return "", texts
        for temperature in self.tc.sample_temperatures:
            (sample,) = generate(
                self.model,
                self.tokenizer,
                seed_text,
                length=self.tc.sample_length,
                sampling=SamplingConfig(temperature=float(temperature)),
                seed=self.tc.seed,
                unknown="drop",
            )
            texts[float(temperature)] = sample.text
        return seed_text, texts

    # ----------------------------------------------------------------- events
    def _record_eval(self, train_loss: float, chars_per_s: float) -> None:
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
        self._log(record)
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
            self._log({"kind": "notice", "step": self.step, "text": verdict.notice})
            self.reporter.message(f"note: {verdict.notice}")
        budget_over = self.budget.done(self.step, self.elapsed)  # then it is no early stop
        if verdict.stop and not self.stopped_early and not budget_over:  # the first reason stands
            self.stopped_early = verdict.stop

    def _samples_due(self) -> bool:
        """``sample_every`` seconds since the last block (0: at epoch ends only, as the book)."""
        if self.tc.sample_every == 0:
            return False
        last = self.last_sample_elapsed
        return last is None or self.elapsed - last >= self.tc.sample_every

    def _record_samples(self, full: bool = False) -> None:
        """Draw, log and show a block of samples; shown whole when ``full`` (the last block) or
        when blocks follow epochs (``sample_every`` 0), else compact. A block already drawn at
        this step is shown again, not drawn again."""
        self.last_sample_elapsed = self.elapsed
        if not self.world.is_main or not self.tc.sample_temperatures or self.tc.sample_length == 0:
            return
        full = full or self.tc.sample_every == 0
        if self._last_block is not None and self._last_block[0] == self.step:
            if full:
                self.reporter.samples(self.epoch, self.step, *self._last_block[1:], full=True)
            return
        seed_text, texts = self.sample_texts()
        self._last_block = (self.step, seed_text, texts)
        for temperature, text in texts.items():
            self._log(
                {
                    "kind": "sample",
                    "step": self.step,
                    "epoch": self.epoch,
                    "temperature": temperature,
                    "seed_text": seed_text,
                    "text": text,
                }
            )
        self.reporter.samples(self.epoch, self.step, seed_text, texts, full=full)

    def epoch_float(self) -> float:
        return round(self.epoch + self.step_in_epoch / self.steps_per_epoch, 4)

    # ----------------------------------------------------------------- loop
    def fit(self, stop_at_step: int | None = None) -> TrainResult:
        """Train until the budget (or ``stop_at_step``) is reached; checkpoint, evaluate, sample."""
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
        self.model.train()
        self.last_sample_elapsed = self.elapsed  # the first block comes sample_every s in
        signals = _StopSignals()
        window_loss = 0.0
        window_steps = 0
        last_loss = float("nan")
        speed_seconds, speed_tokens = 0.0, 0
        chars_per_s = 0.0
        clock = time.perf_counter() - self.elapsed
        with signals.installed():
            try:
                done = self.budget.done(self.step, self.elapsed)
                while not done:
                    if stop_at_step is not None and self.step >= stop_at_step:
                        break
                    if self.step_in_epoch >= self.steps_per_epoch:
                        self._end_epoch(window_loss / max(window_steps, 1), chars_per_s)
                    scale = lr_factor(
                        self.tc, self.step, self.budget.fraction(self.step, self.elapsed)
                    )
                    for group in self.optimizer.param_groups:
                        group["lr"] = self.tc.lr * scale * self.lr_scale
                    step_start = time.perf_counter()
                    last_loss = (
                        self._compiled_step()
                        if self.tc.compile
                        else self.train_step(self.epoch, self.step_in_epoch)
                    )
                    step_seconds = time.perf_counter() - step_start
                    speed_seconds += step_seconds
                    self.step += 1
                    self.step_in_epoch += 1
                    step_tokens = self.batches.tokens_per_step * self.tc.grad_accum  # all ranks
                    self.tokens_seen += step_tokens
                    speed_tokens += step_tokens
                    if math.isfinite(last_loss):  # a skipped batch (--on-nan skip) has no loss
                        window_loss += last_loss
                        window_steps += 1
                    self.elapsed = time.perf_counter() - clock
                    # throughput of the training steps alone, over windows of about 0.5 s
                    chars_per_s = speed_tokens / max(speed_seconds, 1e-9)
                    if speed_seconds > 0.5:
                        speed_seconds, speed_tokens = 0.0, 0
                    total = self.budget.steps
                    self.reporter.progress(
                        self.step,
                        total,
                        self.budget.fraction(self.step, self.elapsed),
                        last_loss,
                        chars_per_s,
                    )
                    if self.step % TRAIN_LOG_EVERY == 0:
                        self._log(
                            {
                                "kind": "train",
                                "step": self.step,
                                "epoch": self.epoch_float(),
                                "elapsed": round(self.elapsed, 3),
                                "loss": window_loss / max(window_steps, 1),
                                "lr": self.optimizer.param_groups[0]["lr"],
                                "chars_per_s": chars_per_s,
                            }
                        )
                        train_avg = window_loss / max(window_steps, 1)
                        window_loss, window_steps = 0.0, 0
                    else:
                        train_avg = last_loss
                    if self.step % self.tc.eval_every == 0:
                        self._record_eval(train_avg, chars_per_s)
                    if self._samples_due():
                        self._record_samples()
                    if (
                        self.step % self.tc.checkpoint_every == 0
                        or self.step % self.tc.eval_every == 0
                    ):
                        self._checkpoint()
                    # every rank takes the same decision: stop if any rank's budget or signal says so
                    budget_done, signum = self.world.any(
                        float(
                            self.budget.done(self.step, self.elapsed) or bool(self.stopped_early)
                        ),
                        float(signals.signum or 0),
                        device=self.device,
                    )
                    if signum:
                        self._checkpoint()
                        raise self._interrupted(int(signum))
                    done = bool(budget_done)
            finally:
                self.reporter.close()
        if self.step_in_epoch >= self.steps_per_epoch and not self.stopped_early:
            self._end_epoch(last_loss, chars_per_s, final=True)
        else:  # the end of the budget: a last evaluation (unless one just ran) and samples
            if self._last_eval_step != self.step:
                self._record_eval(last_loss, chars_per_s)
            self._record_samples(full=True)
        self._checkpoint()
        if self.stopped_early:
            self._log({"kind": "notice", "step": self.step, "text": self.stopped_early})
            self.reporter.message(self.stopped_early)
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

    def _budget_text(self) -> str:
        if self.budget.seconds is not None:
            return f"{self.budget.seconds / 60:g} min"
        epochs = self.budget.steps / self.steps_per_epoch if self.budget.steps else 0
        return f"{self.budget.steps:,} steps ({epochs:.3g} epochs)"

    def _split_info(self) -> dict[str, Any]:
        if not self.lines:
            return {
                "train tokens": f"{len(self.train_ids):,}",
                "val tokens": f"{len(self.val_ids):,}",
            }
        return {"items": f"{len(self.train_items):,} train, {len(self.val_items):,} val (--lines)"}

    _last_eval_step = -1

    def _end_epoch(self, train_loss: float, chars_per_s: float, final: bool = False) -> None:
        """A long epoch ends with an evaluation and (``sample_every`` 0) samples, as the book's
        program does; a short one (a small corpus) leaves both to the step and sample clocks."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.carry = None
        long_epoch = self.steps_per_epoch >= min(EPOCH_EVAL_STEPS, self.tc.eval_every)
        if (long_epoch or final) and self._last_eval_step != self.step:
            self._record_eval(train_loss, chars_per_s)
        if self.tc.sample_every == 0 or final:
            self._record_samples(full=final)
        self._checkpoint()

    def _log(self, record: dict[str, Any]) -> None:
        if self.world.is_main:
            self.metrics.append(record)

    def _checkpoint(self) -> None:
        self.save_checkpoint()
        self._last_saved = self.step

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        code = 130 if signum == signal.SIGINT else 143
        return TrainingInterrupted(
            f"{name}: stopped after step {self.step}, checkpoint saved in {self.run}; "
            f"continue with: chargen train {self.config.data.source} --out {self.run} --resume",
            code,
        )


def _encode_corpus(
    data: DataConfig, tokenizer: Tokenizer | None, progress: bool
) -> tuple[Tokenizer, np.ndarray, str]:
    """Token ids of the source (memory-mapped for a prepared data folder) and a corpus checksum."""
    if is_prepared(data.source):
        prepared = open_prepared(data.source)
        if tokenizer is not None and tokenizer.to_dict() != prepared.tokenizer.to_dict():
            raise TrainingError(f"{data.source}: its tokenizer differs from the run's")
        if bool(prepared.meta.get("lines", False)) != data.lines:
            said = "with" if prepared.meta.get("lines", False) else "without"
            raise TrainingError(
                f"{data.source} was prepared {said} --lines; train it the same way, or "
                "prepare it again"
            )
        return prepared.tokenizer, prepared.ids, prepared.meta["source_sha256"]
    corpus = load_corpus(
        data.source,
        encoding=data.encoding,
        errors=data.errors,
        lowercase=data.lowercase,
        data_dir=data.data_dir,
        progress=progress,
    )
    text = lines_text(items_of(corpus.text)) if data.lines else corpus.text
    if tokenizer is None:
        tokenizer = build_tokenizer(data.tokenizer, text, max_vocab=data.max_vocab)
    ids = tokenizer.encode(text, unknown="error")
    return (
        tokenizer,
        ids.astype(smallest_id_dtype(tokenizer.vocab_size)),
        text_checksum(text),
    )


def start_run(
    out: str | Path,
    data: DataConfig,
    model: ModelConfig,
    train: TrainConfig,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    stop_at_step: int | None = None,
    auto: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a new run in ``out`` (refused if it holds a run, unless ``overwrite``).

    With ``auto`` (the fields the user set, by name) the model and training settings are chosen
    once the corpus is read (``chargen.auto``); ``model`` and ``train`` give only the budget and
    runtime settings then.
    """
    data.validate()
    model.validate()
    train.validate()
    check_compatible(model, train)
    ckpt.check_run_dir(out, resume=False, overwrite=overwrite)

    def body(world: World) -> TrainResult:
        progress = reporter is not None and world.is_main
        tokenizer, ids, sha = _encode_corpus(data, None, progress=progress)
        chosen_model, chosen_train, choice = model, train, None
        if auto is not None:
            chosen_model, chosen_train, choice = _choose_auto(train, auto, ids, tokenizer, world)
            if reporter is not None and world.is_main:
                reporter.message(choice.line)
        config = ckpt.RunConfig(
            replace(chosen_model, vocab_size=tokenizer.vocab_size),
            chosen_train,
            data,
            choice.to_dict() if choice else None,
        )
        # everything that can refuse the input runs before the folder is touched
        trainer = Trainer(Path(out), config, tokenizer, ids, sha, reporter, world)
        if world.is_main:
            ckpt.prepare_run_dir(out, resume=False, overwrite=overwrite)
            ckpt.save_config(trainer.run, config)
            ckpt.save_tokenizer(trainer.run, tokenizer)
        world.barrier()
        return trainer.fit(stop_at_step)

    return _in_world(train.device, body)


def _choose_auto(
    train: TrainConfig,
    explicit: dict[str, Any],
    ids: np.ndarray,
    tokenizer: Tokenizer,
    world: World,
) -> tuple[ModelConfig, TrainConfig, auto.Choice]:
    """``--preset auto``: probe this device's speed (averaged over ranks), then choose."""
    if train.threads:
        torch.set_num_threads(train.threads)
    device = run_device(train.device, world)
    speed = world.mean(auto.probe_chars_per_s(device), device)
    train_tokens = int(len(ids) * (1 - train.val_fraction))  # of the text, or of the lines
    unit = "chars" if tokenizer.kind == "char" else "tokens"

    def measure(model: ModelConfig, tuned: TrainConfig) -> float:
        return world.mean(
            auto.model_chars_per_s(model, tuned, tokenizer.vocab_size, device), device
        )

    model, tuned, choice = auto.choose(train, explicit, train_tokens, speed, measure, unit)
    model.validate()
    tuned.validate()
    check_compatible(model, tuned)
    return model, tuned, choice


def _in_world(device: str, body: Callable[[World], TrainResult]) -> TrainResult:
    """Run ``body`` inside torchrun's process group (a world of one outside torchrun)."""
    world = init_world(device)
    try:
        result = body(world)
    except BaseException:
        close_world(world, finished=False)
        raise
    close_world(world, finished=True)
    return result


def resume_run(
    out: str | Path,
    *,
    budget: dict[str, Any] | None = None,
    data_dir: str | None = None,
    runtime: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    stop_at_step: int | None = None,
) -> TrainResult:
    """Continue the run in ``out``.

    ``budget`` may replace its steps / epochs / minutes; ``runtime`` its threads / device / compile
    (settings of this process, not of the run, so they are not saved).
    """
    run = ckpt.prepare_run_dir(out, resume=True, overwrite=False)
    config = ckpt.load_config(run)
    tokenizer = load_tokenizer(run / ckpt.TOKENIZER)
    if budget:
        train = replace(
            config.train, **{"steps": None, "epochs": None, "minutes": None, **budget}
        ).validate()
        config = replace(config, train=train)
    data = replace(config.data, data_dir=data_dir) if data_dir else config.data
    stored = config
    if runtime:
        config = replace(config, train=replace(config.train, **runtime).validate())

    def body(world: World) -> TrainResult:
        progress = reporter is not None and world.is_main
        _, ids, sha = _encode_corpus(data, tokenizer, progress=progress)
        trainer = Trainer(run, config, tokenizer, ids, sha, reporter, world)
        trainer.restore()
        # the new budget is written only once the old state has loaded: a refused resume changes nothing
        if budget and world.is_main:
            ckpt.save_config(run, stored)
        world.barrier()
        return trainer.fit(stop_at_step)

    return _in_world(config.train.device, body)
