"""``chargen inspect``, ``chargen novelty`` and ``chargen neurons``: look inside a run's
model: its next-token distribution (and the X-ray of a sampling chain), the spans of a text
copied verbatim from its training text, and the units that track features of a text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chargen.cli_options import given_fields, text_argument
from chargen.errors import ConfigError


def cmd_inspect(args: argparse.Namespace) -> int:
    from chargen.checkpoint import load_run
    from chargen.escapes import decode_escapes
    from chargen.inspect_next import inspect_plan, plot_table
    from chargen.sampling import SamplingConfig

    prompt = args.prompt if args.no_escapes else decode_escapes(args.prompt, "--prompt")
    plan = inspect_plan(given_fields(args, SamplingConfig), args.temperature)
    _, tokenizer, model = load_run(args.run_dir, args.weights)
    table = plan.table(model, tokenizer, prompt, args.top, args.unknown)
    if args.format == "json":
        print(json.dumps(table.to_dict(), ensure_ascii=False))
    else:
        print(table.render())
    if args.plot:
        plot_table(table, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


NOVELTY_SNIPPET = 80  # characters of a copied span quoted in the text output


def _copy_line(text: str, span: dict[str, int]) -> str:
    """``57 chars at text offset 120 (training text offset 40212): "..."``."""
    length, start = span["length"], span["text_offset"]
    piece = text[start : start + length]
    if len(piece) > NOVELTY_SNIPPET:
        piece = piece[: NOVELTY_SNIPPET - 3] + "..."
    return (
        f"{length} chars at text offset {start} (training text offset {span['corpus_offset']}): "
        f"{json.dumps(piece, ensure_ascii=False)}"
    )


def cmd_novelty(args: argparse.Namespace) -> int:
    from chargen.checkpoint import load_run
    from chargen.run_novelty import RunNovelty
    from chargen.run_text import text_novelty

    if args.min_span < 1:
        raise ConfigError(f"--min-span must be at least 1, got {args.min_span}")
    config, tokenizer, _ = load_run(args.run_dir)
    text = text_argument(args, config)
    novelty = RunNovelty.open(args.run_dir, config, tokenizer, data_dir=args.data_dir)
    found = text_novelty(novelty, text, args.min_span)
    if args.json:
        print(json.dumps(found.to_dict(), ensure_ascii=False))
        return 0
    for label, item in found.labelled or ():
        print(f"{label}\t{item}")
    if found.summary:
        print(found.summary)
    report = found.report
    longest = report["longest"]
    if longest["length"] == 0:
        print("longest copy: 0 chars (no character of the text occurs in the training text)")
    else:
        print(f"longest copy: {_copy_line(text, longest)}")
    print(f"copied spans of at least {args.min_span} chars: {len(report['spans'])}")
    for span in report["spans"]:
        print(f"  {_copy_line(text, span)}")
    return 0


def cmd_neurons(args: argparse.Namespace) -> int:
    import time

    from chargen.checkpoint import load_run
    from chargen.neurons import parse_units, unit_groups
    from chargen.neurons_page import analyse, lab_page, write_page
    from chargen.text_features import parse_feature

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    user = [parse_feature(spec) for spec in args.feature or []]
    if args.html:  # fail before the work, not after it
        from chargen.atomic import check_writable_folder

        folder = Path(args.html).parent
        try:
            check_writable_folder(folder)
        except OSError as exc:
            raise ConfigError(
                f"--html {args.html}: cannot write in {folder}: {exc.strerror}"
            ) from None
    config, tokenizer, model = load_run(args.run_dir, args.weights)
    requested = parse_units(args.units or [], unit_groups(model), config.model.family)
    text = text_argument(args, config)
    started = time.perf_counter()
    analysis = analyse(model, tokenizer, text, user, args.top, args.unknown)
    recording, names, ranking = analysis.recording, analysis.names, analysis.ranking
    elapsed = time.perf_counter() - started
    source = "stdin" if args.file == "-" else Path(args.file).name
    run_name = Path(args.run_dir).resolve().name
    print(
        f"read {len(recording.text):,} characters with {recording.description} "
        f"({recording.units:,} units) in {elapsed:.1f} s",
        file=sys.stderr,
    )
    if analysis.constant.any():
        flat = zip(names, analysis.constant, strict=True)
        print(
            f"constant over this text, so not ranked: {', '.join(n for n, c in flat if c)}",
            file=sys.stderr,
        )
    if args.html:
        summary = (
            f"{len(recording.text):,} characters of {source} read by the {recording.description} "
            f"of run {run_name}; {recording.units:,} units recorded."
        )
        data, embedded = lab_page(analysis, summary, args.run_dir, requested)
        size = write_page(args.html, f"Neurons of {run_name} reading {source}", data)
        print(
            f"page written to {args.html} ({size / 1e6:.1f} MB), holding {embedded}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(ranking, ensure_ascii=False))
        return 0
    width = max(len(name) for name in names)
    print(f"{'feature':<{width}}  top units by |r| (layer:kind:unit r)")
    for name in names:
        items = [item for item in ranking if item["feature"] == name]
        cells = "  ".join(
            f"{item['layer']}:{item['kind']}:{item['unit']} {item['r']:+.3f}" for item in items
        )
        print(f"{name:<{width}}  {cells or '(constant over this text)'}")
    return 0
