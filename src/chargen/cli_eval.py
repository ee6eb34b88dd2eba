"""``chargen eval`` and ``chargen score``: how well a run's model predicts a text, as the
loss on a validation split (or the whole text) and as bits per character of any file, with an
optional page colouring each character by its surprisal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chargen.errors import ConfigError


def cmd_eval(args: argparse.Namespace) -> int:
    from chargen.checkpoint import load_run
    from chargen.evaluate import evaluate_run

    config, tokenizer, model = load_run(args.run_dir, args.weights)
    if args.onnx_model is not None and args.engine != "onnx":
        raise ConfigError("--onnx-model goes with --engine onnx")
    if args.engine == "onnx":  # the exported graph behind the model interface, step by step
        from chargen.onnx_engine import default_path, open_onnx_engine

        path = args.onnx_model if args.onnx_model is not None else default_path(args.run_dir)
        model = open_onnx_engine(path, model, tokenizer)  # type: ignore[assignment]
    found = evaluate_run(
        model,
        tokenizer,
        config,
        args.source,
        part="all" if args.all else "validation",
        encoding=args.encoding,
        errors=args.errors,
        lowercase=args.lowercase,
        data_dir=args.data_dir,
        unknown=args.unknown,
    )
    if args.json:
        print(json.dumps(found.to_dict()))
    else:
        result = found.result
        print(
            f"{found.scored}: {result.nats_per_char:.4f} nats/char, "
            f"{result.bits_per_char:.4f} bits/char over {result.chars:,} chars"
        )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from chargen.checkpoint import load_run
    from chargen.cli_options import text_argument
    from chargen.score import score_text, write_surprisal_html

    if args.copies and not args.html:
        raise ConfigError("--copies marks copied spans on the --html page; pass --html too")
    if args.min_span < 1:
        raise ConfigError(f"--min-span must be at least 1, got {args.min_span}")
    config, tokenizer, model = load_run(args.run_dir, args.weights)
    text = text_argument(args, config)
    name = "stdin" if args.file == "-" else args.file  # as the reader's errors name it
    scored = score_text(model, tokenizer, text, args.unknown)
    if scored.chars == 0:
        raise ConfigError(f"{name}: nothing the model can score")
    print(f"{name}: {scored.bits_per_char:.4f} bits/char over {scored.chars:,} chars")
    if args.html:
        copies = None
        if args.copies:  # looked up in the text as scored: offsets are those of the page
            from chargen.run_novelty import RunNovelty, merge_spans

            novelty = RunNovelty.open(args.run_dir, config, tokenizer)
            report = novelty.report("".join(scored.pieces), args.min_span)
            copies = merge_spans(report["spans"])
            print(
                f"copied from the training text: {len(report['spans'])} span(s) of at least "
                f"{args.min_span} chars, longest copy {report['longest']['length']} chars",
                file=sys.stderr,
            )
        write_surprisal_html(
            scored,
            f"surprisal of {Path(name).name} under {Path(args.run_dir).name}",
            args.html,
            copies,
            args.min_span,
        )
        print(f"page written to {args.html}", file=sys.stderr)
    return 0
