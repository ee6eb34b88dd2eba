"""The Python API: train from a source with a budget, load a run, generate.

import chargen
chargen.train("python-docs", "runs/docs", minutes=1)
run = chargen.load("runs/docs")
print(run.generate("The ", length=200, temperature=0.5))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen import checkpoint as ckpt
from chargen.config import DEFAULT_PRESET, DataConfig, ModelConfig, TrainConfig, get_preset
from chargen.errors import ConfigError
from chargen.evaluate import EvalResult
from chargen.generate import Sample, generate
from chargen.models import LanguageModel
from chargen.reporting import ConsoleReporter, Reporter
from chargen.sampling import SamplingConfig
from chargen.tokenizer import Tokenizer
from chargen.training import TrainResult, resume_run, start_run


@dataclass
class Run:
    """A trained run loaded for generation: its config, tokenizer and model."""

    path: Path
    config: ckpt.RunConfig
    tokenizer: Tokenizer
    model: LanguageModel

    def generate(
        self,
        prompt: str = "",
        length: int = 400,
        temperature: float = 1.0,
        *,
        seed: int = 0,
        **sampling: Any,
    ) -> str:
        """One continuation of ``prompt`` (the prompt itself not included).

        ``seed`` defaults to 0, so the same call gives the same text (unlike the command line,
        which draws a fresh seed when ``--seed`` is not given); pass
        ``seed=secrets.randbelow(2**32)`` for a fresh one. ``prompt`` is taken literally: no
        backslash escapes are read (``chargen.escapes.decode_escapes`` reads them).
        """
        return self.samples(prompt, length, temperature, seed=seed, **sampling)[0].text

    def samples(
        self,
        prompt: str = "",
        length: int = 400,
        temperature: float = 1.0,
        *,
        num_samples: int = 1,
        seed: int = 0,
        stop: tuple[str, ...] = (),
        unknown: str = "warn",
        **sampling: Any,
    ) -> list[Sample]:
        """``num_samples`` continuations with per-token log-probabilities and entropies.

        Sample ``i`` uses seed ``seed + i`` (default 0, as in ``generate``).
        """
        cfg = SamplingConfig.from_dict({"temperature": temperature, **sampling})
        return generate(
            self.model,
            self.tokenizer,
            prompt,
            length=length,
            sampling=cfg,
            num_samples=num_samples,
            seed=seed,
            stop=stop,
            unknown=unknown,
        )


def load(run_dir: str | Path, which: str = "best", device: str = "cpu") -> Run:
    """Load a run's ``best`` (default) or ``last`` weights for generation."""
    config, tokenizer, model = ckpt.load_run(run_dir, which, device)
    return Run(Path(run_dir), config, tokenizer, model)


def train(
    source: str,
    out: str | Path,
    *,
    preset: str = DEFAULT_PRESET,
    minutes: float | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> TrainResult:
    """Train on ``source`` (file, folder, glob or corpus name) into run folder ``out``.

    ``options`` are fields of ModelConfig, TrainConfig or DataConfig (e.g. ``hidden_size=256``,
    ``lowercase=True``); the preset gives the rest (``auto``, the default, chooses it from the
    corpus size, the budget and this machine's speed). The budget is ``steps``, ``epochs`` or
    ``minutes`` (at most one; the preset's when none).
    """
    budget = {
        k: v
        for k, v in {"steps": steps, "epochs": epochs, "minutes": minutes}.items()
        if v is not None
    }
    if len(budget) > 1:
        raise ConfigError("give at most one of steps, epochs, minutes")
    reporter = reporter or (ConsoleReporter() if verbose else None)
    if resume:
        if options:
            raise ConfigError(f"cannot change {', '.join(sorted(options))} when resuming a run")
        return resume_run(out, budget=budget or None, reporter=reporter)
    model_cfg, train_cfg, data_cfg = build_configs(source, preset, budget, options)
    return start_run(
        out,
        data_cfg,
        model_cfg,
        train_cfg,
        overwrite=overwrite,
        reporter=reporter,
        auto=options if preset == "auto" else None,
    )


def build_configs(
    source: str, preset: str, budget: dict[str, Any], options: dict[str, Any]
) -> tuple[ModelConfig, TrainConfig, DataConfig]:
    """A preset's configs with ``budget`` and field ``options`` applied (ConfigError on unknown names)."""
    chosen = get_preset(preset)
    groups: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    owners = {
        **{f.name: "model" for f in dataclasses.fields(ModelConfig)},
        **{f.name: "train" for f in dataclasses.fields(TrainConfig)},
        **{f.name: "data" for f in dataclasses.fields(DataConfig)},
    }
    for name, value in options.items():
        if name not in owners or name in ("source", "vocab_size"):
            raise ConfigError(f"unknown training option {name!r}")
        groups[owners[name]][name] = value
    train_cfg = chosen.train
    if budget:
        train_cfg = dataclasses.replace(
            train_cfg, **{"steps": None, "epochs": None, "minutes": None, **budget}
        )
    return (
        dataclasses.replace(chosen.model, **groups["model"]),
        dataclasses.replace(train_cfg, **groups["train"]),
        DataConfig(source=source, **groups["data"]),
    )


__all__ = ["EvalResult", "Run", "TrainResult", "build_configs", "load", "train"]
