"""When training stops and how fast it learns: the budget, the learning-rate schedule and the
optimizer (chargen's own, ``chargen.optimizers``: torch.optim's first use pulls in dynamo)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chargen import optimizers
from chargen.config import TrainConfig


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
