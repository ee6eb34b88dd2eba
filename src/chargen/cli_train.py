"""``chargen train``, ``chargen demo`` and ``chargen plot``: start or resume a training run
from the command line, train the offline two-minute demo, and draw a run's training curves.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from chargen.cli_options import _budget, _flag, given_fields
from chargen.errors import ConfigError


def cmd_train(args: argparse.Namespace) -> int:
    from chargen.config import (
        DEFAULT_PRESET,
        DataConfig,
        ModelConfig,
        TrainConfig,
        build_configs,
        resume_overrides,
    )
    from chargen.reporting import ConsoleReporter
    from chargen.training import resume_run, start_run

    budget = _budget(args)
    reporter = ConsoleReporter()
    options = {
        **given_fields(args, ModelConfig),
        **given_fields(args, TrainConfig),
        **given_fields(args, DataConfig),
    }
    if args.resume:
        if args.preset:
            raise ConfigError("cannot change --preset when resuming")
        runtime, data_dir = resume_overrides(options, spell=_flag)
        result = resume_run(
            args.out,
            budget=budget or None,
            source=args.source,
            data_dir=data_dir,
            runtime=runtime,
            reporter=reporter,
        )
    else:
        if args.source is None:
            raise ConfigError(
                "train needs a SOURCE (a file, folder, glob or corpus name; see: chargen corpora)"
            )
        preset = args.preset or DEFAULT_PRESET
        model_cfg, train_cfg, data_cfg = build_configs(args.source, preset, budget, options)
        result = start_run(
            args.out,
            data_cfg,
            model_cfg,
            train_cfg,
            overwrite=args.overwrite,
            reporter=reporter,
            auto=options if preset == "auto" else None,
        )
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 speaks
        return 0
    best = result.best or "no evaluation"
    print(
        f"done: step {result.step}, {result.elapsed:.1f} s; {best}; run saved in {result.run_dir}",
        file=sys.stderr,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from chargen.config import build_configs
    from chargen.reporting import ConsoleReporter
    from chargen.training import start_run

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="chargen-demo-"))
    print(
        f"chargen demo: training a small LSTM on python-docs (the Python documentation, offline) "
        f"for {args.minutes:g} minute(s); the run goes to {out}",
        flush=True,
    )
    options = {"seed": args.seed} if args.seed is not None else {}
    if args.threads:
        options["threads"] = args.threads
    model_cfg, train_cfg, data_cfg = build_configs(
        "python-docs", "demo", {"minutes": args.minutes}, options
    )
    result = start_run(
        out, data_cfg, model_cfg, train_cfg, overwrite=args.out is None, reporter=ConsoleReporter()
    )
    best = result.best_val_nats_per_char
    loss = (
        "no validation loss"  # None only where no evaluation ran
        if best is None
        else f"validation loss {best:.3f} nats/char ({best / 0.6931471805599453:.3f} bits/char)"
    )
    print(
        f"\ndone in {result.elapsed:.0f} s: {loss}.\n"
        f"generate more with: chargen generate {out} --prompt 'The ' --temperature 0.5",
        flush=True,
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from chargen.plots import plot_curves

    plot_curves(args.run_dir, args.out)
    print(f"curves written to {args.out}", file=sys.stderr)
    return 0
