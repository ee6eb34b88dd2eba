"""The Python API: what the command line does, as functions and a ``Run`` object.

import chargen
chargen.train("python-docs", "runs/docs", minutes=1)
run = chargen.load("runs/docs")
print(run.generate("The ", length=200, temperature=0.5))
print(run.evaluate().result.bits_per_char, run.score("Some text.").bits_per_char)

``train`` / ``resume`` start and continue runs; a ``Run`` generates (``generate``,
``samples``, ``items`` of a list, ``beams``), measures (``evaluate``, ``score``) and looks inside (``inspect``).
Each method calls the core function the command of the same name calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen import checkpoint as ckpt
from chargen.config import DEFAULT_PRESET, RunConfig, build_configs, resume_overrides
from chargen.errors import ConfigError
from chargen.evaluate import EvalResult, RunEvaluation, evaluate_run
from chargen.generate import Sample, beam_generate, generate
from chargen.inspect_next import NextTokenTable, inspect_plan
from chargen.items import Item, draw_items
from chargen.models import LanguageModel
from chargen.reporting import ConsoleReporter, Reporter
from chargen.sampling import SamplingConfig
from chargen.score import Scored, score_text
from chargen.tokenizer import Tokenizer
from chargen.training import TrainResult, resume_run, start_run


@dataclass
class Run:
    """A trained run loaded for generation: its config, tokenizer and model."""

    path: Path
    config: RunConfig
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

    def items(
        self,
        count: int = 10,
        prompt: str = "",
        temperature: float = 1.0,
        *,
        length: int = 400,
        seed: int = 0,
        novelty: bool = False,
        only_new: bool = False,
        stop: tuple[str, ...] = (),
        unknown: str = "warn",
        **sampling: Any,
    ) -> list[Item]:
        """``count`` items of a ``--lines`` run, each from the boundary to the next (``chargen
        generate`` of such a run): item ``i`` uses seed ``seed + i``. ``novelty`` labels each
        ``train``, ``val`` or ``new``; ``only_new`` keeps drawing until ``count`` are new."""
        if not self.config.data.lines:
            raise ConfigError(f"{self.path} was not trained with --lines; use samples()")
        index = None
        if novelty or only_new:
            from chargen.run_novelty import RunNovelty

            index = RunNovelty.open(self.path, self.config, self.tokenizer).items
        found, _ = draw_items(
            self.model,
            self.tokenizer,
            prompt,
            index,
            count=count,
            length=length,
            sampling=SamplingConfig.from_dict({"temperature": temperature, **sampling}),
            seed=seed,
            stop=stop,
            only_new=only_new,
            unknown=unknown,
        )
        return found

    def beams(
        self,
        prompt: str = "",
        length: int = 100,
        width: int = 4,
        *,
        length_penalty: float = 1.0,
        unknown: str = "warn",
        **sampling: Any,
    ) -> list[Sample]:
        """The ``width`` most likely continuations by beam search, best first; each
        ``Sample.logprobs`` holds one entry, its score (``generate --beams``). Of a ``--lines``
        run, each is the rest of one item: from the boundary, ended by the next."""
        return beam_generate(
            self.model,
            self.tokenizer,
            prompt,
            beams=width,
            length=length,
            length_penalty=length_penalty,
            sampling=SamplingConfig.from_dict(sampling),
            unknown=unknown,
            lines=self.config.data.lines,
        )

    def evaluate(
        self,
        source: str | None = None,
        *,
        all: bool = False,
        encoding: str | None = None,
        errors: str | None = None,
        lowercase: bool | None = None,
        data_dir: str | None = None,
        unknown: str = "warn",
    ) -> RunEvaluation:
        """The loss on the validation split of ``source`` (default: the run's own text), or on
        all of it with ``all=True``, scored as the run trains (``chargen eval``)."""
        return evaluate_run(
            self.model,
            self.tokenizer,
            self.config,
            source,
            part="all" if all else "validation",
            encoding=encoding,
            errors=errors,
            lowercase=lowercase,
            data_dir=data_dir,
            unknown=unknown,
        )

    def score(self, text: str, unknown: str = "warn") -> Scored:
        """The surprisal, in bits, of each token of ``text`` (``chargen score``);
        ``.bits_per_char`` sums it up."""
        return score_text(self.model, self.tokenizer, text, unknown)

    def inspect(
        self,
        prompt: str = "",
        temperatures: tuple[float, ...] | None = None,
        *,
        top: int = 10,
        unknown: str = "warn",
        **sampling: Any,
    ) -> NextTokenTable:
        """The next token's distribution after ``prompt`` (``chargen inspect``): one column per
        temperature, or, when ``sampling`` names rules of a chain, the X-ray: one column per
        stage of that chain (at one temperature)."""
        plan = inspect_plan(sampling, temperatures)
        return plan.table(self.model, self.tokenizer, prompt, top, unknown)


def load(run_dir: str | Path, which: str = "best", device: str = "cpu") -> Run:
    """Load a run's ``best`` (default) or ``last`` weights for generation."""
    config, tokenizer, model = ckpt.load_run(run_dir, which, device)
    return Run(Path(run_dir), config, tokenizer, model)


def _budget(steps: int | None, epochs: float | None, minutes: float | None) -> dict[str, Any]:
    budget = {
        k: v
        for k, v in {"steps": steps, "epochs": epochs, "minutes": minutes}.items()
        if v is not None
    }
    if len(budget) > 1:
        raise ConfigError("give at most one of steps, epochs, minutes")
    return budget


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
    ``minutes`` (at most one; the preset's when none). ``resume=True`` continues the run in
    ``out`` instead, as ``resume`` does (``source`` must be the run's).
    """
    budget = _budget(steps, epochs, minutes)
    if resume:
        return _resume(out, budget, source, options, reporter, verbose)
    reporter = reporter or (ConsoleReporter() if verbose else None)
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


def resume(
    out: str | Path,
    *,
    minutes: float | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    verbose: bool = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> TrainResult:
    """Continue the run in ``out`` where it stopped (``chargen train --resume``): with a new
    budget if given, and ``options`` limited to what a resume may change (``threads``,
    ``device``, ``compile``, ``data_dir``: ``config.resume_overrides``)."""
    return _resume(out, _budget(steps, epochs, minutes), None, options, reporter, verbose)


def _resume(
    out: str | Path,
    budget: dict[str, Any],
    source: str | None,
    options: dict[str, Any],
    reporter: Reporter | None,
    verbose: bool,
) -> TrainResult:
    runtime, data_dir = resume_overrides(options)
    return resume_run(
        out,
        budget=budget or None,
        source=source,
        data_dir=data_dir,
        runtime=runtime,
        reporter=reporter or (ConsoleReporter() if verbose else None),
    )


__all__ = [
    "EvalResult",
    "Item",
    "Run",
    "RunEvaluation",
    "Scored",
    "TrainResult",
    "load",
    "resume",
    "train",
]
