"""Start and resume runs: read the corpus's ids (``data.load_ids``), choose
``--preset auto``'s settings, build the ``Trainer`` and run it inside torchrun's world."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chargen import auto
from chargen import checkpoint as ckpt
from chargen.config import DataConfig, ModelConfig, RunConfig, TrainConfig, check_compatible
from chargen.data import load_ids
from chargen.data import text_checksum as text_checksum  # importable from here, as before
from chargen.distributed import World, close_world, init_world
from chargen.errors import ConfigError
from chargen.reporting import Reporter
from chargen.tokenizer import Tokenizer, load_tokenizer
from chargen.training.runtime import run_device
from chargen.training.trainer import Trainer, TrainResult


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
        source = load_ids(data, progress=progress)
        tokenizer, ids, sha = source.tokenizer, source.ids, source.sha256
        chosen_model, chosen_train, choice = model, train, None
        if auto is not None:
            chosen_model, chosen_train, choice = _choose_auto(train, auto, ids, tokenizer, world)
            if reporter is not None and world.is_main:
                reporter.message(choice.line)
        config = RunConfig(
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
    unit = "chars" if tokenizer.unit == "character" else "tokens"

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
    source: str | None = None,
    data_dir: str | None = None,
    runtime: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    stop_at_step: int | None = None,
) -> TrainResult:
    """Continue the run in ``out``.

    ``budget`` may replace its steps / epochs / minutes; ``runtime`` its threads / device / compile
    (settings of this process, not of the run, so they are not saved); ``data_dir`` where a named
    corpus is cached (``config.resume_overrides`` is the rule). ``source``, when given, must be
    the one the run was trained on.
    """
    run = ckpt.prepare_run_dir(out, resume=True, overwrite=False)
    config = ckpt.load_config(run)
    if source is not None and source != config.data.source:
        raise ConfigError(f"{run} was trained on {config.data.source!r}, not {source!r}")
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
        source = load_ids(data, tokenizer, progress=progress)
        trainer = Trainer(run, config, tokenizer, source.ids, source.sha256, reporter, world)
        trainer.restore()
        # the new budget is written only once the old state has loaded: a refused resume changes nothing
        if budget and world.is_main:
            ckpt.save_config(run, stored)
        world.barrier()
        return trainer.fit(stop_at_step)

    return _in_world(config.train.device, body)
