"""Training, in parts: ``run`` starts and resumes runs; ``trainer`` holds a run's state and the
loop; ``step`` is one optimizer step; ``samples`` the sample blocks; ``schedule`` the budget,
learning rate and optimizer; ``runtime`` device, precision, compilation and signals."""

from __future__ import annotations

from chargen.training.run import resume_run, start_run, text_checksum
from chargen.training.runtime import (
    compile_for_training,
    resolve_device,
    resolve_precision,
    row_chunks,
    row_slices,
)
from chargen.training.samples import SEED_TEXT_CHARS, seed_text_start
from chargen.training.schedule import Budget, lr_factor, make_budget, make_optimizer
from chargen.training.trainer import Trainer, TrainingInterrupted, TrainResult

__all__ = [
    "SEED_TEXT_CHARS",
    "Budget",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "compile_for_training",
    "lr_factor",
    "make_budget",
    "make_optimizer",
    "resolve_device",
    "resolve_precision",
    "resume_run",
    "row_chunks",
    "row_slices",
    "seed_text_start",
    "start_run",
    "text_checksum",
]
