"""The ``chargen`` command: a thin face over the Python API.

Every user error ends as one line on stderr and exit status 2; SIGINT / SIGTERM during
training end with 130 / 143 after a checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from chargen import __version__
from chargen.cli_export import add_export_parser
from chargen.cli_generate import cmd_generate
from chargen.errors import ChargenError, ConfigError
from chargen.fields import flag_name, help_of, is_flag


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"chargen: error: {message} (see: {self.prog} --help)\n")


def _flag(name: str) -> str:
    """The flag that sets configuration field ``name`` (its metadata says, ``fields.py``)."""
    from chargen.config import DataConfig, ModelConfig, TrainConfig

    for cls in (ModelConfig, TrainConfig, DataConfig):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return flag_name(f)
    return "--" + name.replace("_", "-")


def _scalar_type(hint: Any) -> tuple[Any, bool]:
    """(element type, is_sequence) of a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _scalar_type(args[0])
    if origin is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, title: str, skip: frozenset[str] = frozenset()
) -> None:
    """One flag per field of dataclass ``cls``; every default is None ("not given")."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not is_flag(f) or f.name in skip:
            continue
        kind, many = _scalar_type(hints[f.name])
        text = help_of(f)
        options: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": text.replace("%", "%%") if text else None,
        }
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options.update(type=kind, metavar="X" if many else f.name.upper())
            if many:  # --x a b and --x a --x b alike
                options.update(nargs="+", action="extend")
        group.add_argument(flag_name(f), **options)


def given_fields(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` the user set on the command line."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None and is_flag(f):
            out[f.name] = tuple(value) if isinstance(value, list) else value
    return out


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k: getattr(args, k) for k in ("steps", "epochs", "minutes") if getattr(args, k) is not None
    }


def _add_budget(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--epochs", type=float, help="train for E passes over the training split")
    group.add_argument("--steps", type=int, help="train for S optimizer steps")
    group.add_argument("--minutes", type=float, help="train for M minutes of wall time")


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from chargen.api import build_configs
    from chargen.checkpoint import load_config, prepare_run_dir
    from chargen.config import DEFAULT_PRESET, RUNTIME_FIELDS, DataConfig, ModelConfig, TrainConfig
    from chargen.reporting import ConsoleReporter
    from chargen.training import resume_run, start_run

    budget = _budget(args)
    reporter = ConsoleReporter()
    if args.resume:
        changed = {
            **given_fields(args, ModelConfig),
            **given_fields(args, TrainConfig),
            **given_fields(args, DataConfig),
        }
        changed.pop("data_dir", None)
        runtime = {k: changed.pop(k) for k in RUNTIME_FIELDS if k in changed}
        if changed or args.preset:
            names = ", ".join(_flag(n) for n in sorted(changed)) or "--preset"
            raise ConfigError(
                f"cannot change {names} when resuming; only the budget (--steps/--epochs/--minutes), "
                "--threads, --device and --compile may change"
            )
        run = prepare_run_dir(args.out, resume=True, overwrite=False)
        stored = load_config(run).data.source
        if args.source is not None and args.source != stored:
            raise ConfigError(f"{run} was trained on {stored!r}, not {args.source!r}")
        result = resume_run(
            run, budget=budget or None, data_dir=args.data_dir, runtime=runtime, reporter=reporter
        )
    else:
        if args.source is None:
            raise ConfigError(
                "train needs a SOURCE (a file, folder, glob or corpus name; see: chargen corpora)"
            )
        options = {
            **given_fields(args, ModelConfig),
            **given_fields(args, TrainConfig),
            **given_fields(args, DataConfig),
        }
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


def cmd_inspect(args: argparse.Namespace) -> int:
    from chargen.checkpoint import load_run
    from chargen.escapes import decode_escapes
    from chargen.inspect_next import next_token_table, plot_table, xray_table
    from chargen.sampling import SamplingConfig

    prompt = args.prompt if args.no_escapes else decode_escapes(args.prompt, "--prompt")
    rules = given_fields(args, SamplingConfig)
    rules.pop("temperature", None)
    chain_rules = set(rules) - {"clamp"}
    temperatures = args.temperature or ([1.0] if chain_rules else [0.2, 0.5, 1.0, 1.2])
    if chain_rules and len(temperatures) > 1:
        raise ConfigError("the X-ray of a sampling chain takes one --temperature")
    configs = [SamplingConfig(temperature=t, **rules).validate() for t in temperatures]
    _, tokenizer, model = load_run(args.run_dir, args.weights)
    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    if chain_rules:  # the X-ray: the distribution after each stage of the chain
        table = xray_table(model, tokenizer, prompt, configs[0], args.top, args.unknown)
    else:  # units held (--clamp) change the model's distribution, not the chain
        table = next_token_table(
            model, tokenizer, prompt, temperatures, args.top, args.unknown, configs[0].clamp
        )
    if args.format == "json":
        print(json.dumps(table.to_dict(), ensure_ascii=False))
    else:
        print(table.render())
    if args.plot:
        plot_table(table, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from chargen.checkpoint import load_run
    from chargen.corpus import load_corpus
    from chargen.score import score_text, write_surprisal_html

    if args.copies and not args.html:
        raise ConfigError("--copies marks copied spans on the --html page; pass --html too")
    if args.min_span < 1:
        raise ConfigError(f"--min-span must be at least 1, got {args.min_span}")
    config, tokenizer, model = load_run(args.run_dir, args.weights)
    # decoded as eval decodes a text other than the run's own: the run's policy unless told
    corpus = load_corpus(
        args.file,
        encoding=args.encoding,
        errors=args.errors or config.data.errors,
        lowercase=config.data.lowercase if args.lowercase is None else args.lowercase,
        progress=False,
    )
    scored = score_text(model, tokenizer, corpus.text, args.unknown)
    if scored.chars == 0:
        raise ConfigError(f"{args.file}: nothing the model can score")
    print(f"{args.file}: {scored.bits_per_char:.4f} bits/char over {scored.chars:,} chars")
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
            f"surprisal of {Path(args.file).name} under {Path(args.run_dir).name}",
            args.html,
            copies,
            args.min_span,
        )
        print(f"page written to {args.html}", file=sys.stderr)
    return 0


NOVELTY_SNIPPET = 80  # characters of a copied span quoted in the text output


def _novelty_text(args: argparse.Namespace, config: Any) -> str:
    """FILE (or stdin for ``-``) decoded as ``score`` decodes a text: the run's error policy
    and lower-casing unless told; newlines normalised."""
    from chargen.corpus import check_decoding, decode_bytes, load_corpus
    from chargen.errors import CorpusError

    errors = args.errors or config.data.errors
    lowercase = config.data.lowercase if args.lowercase is None else args.lowercase
    if args.file != "-":
        return load_corpus(
            args.file, encoding=args.encoding, errors=errors, lowercase=lowercase, progress=False
        ).text
    check_decoding(args.encoding, errors)
    text = decode_bytes(sys.stdin.buffer.read(), "stdin", args.encoding or "utf-8", errors)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError("stdin: the text is empty")
    return text.lower() if lowercase else text


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

    if args.min_span < 1:
        raise ConfigError(f"--min-span must be at least 1, got {args.min_span}")
    config, tokenizer, _ = load_run(args.run_dir)
    text = _novelty_text(args, config)
    novelty = RunNovelty.open(args.run_dir, config, tokenizer, data_dir=args.data_dir)
    labelled: list[tuple[str, str]] = []
    summary = ""
    if novelty.items is not None:  # a --lines run: each line of the text is an item
        from chargen.lines import items_of

        lines = items_of(text)
        labels = novelty.items.labels(lines)
        labelled = list(zip(labels, lines, strict=True))
        summary = novelty.items.summary(labels)
    report = novelty.report(text, args.min_span)
    if args.json:
        if novelty.items is not None:
            report["items"] = [{"text": item, "label": label} for label, item in labelled]
            report["summary"] = summary
        print(json.dumps(report, ensure_ascii=False))
        return 0
    for label, item in labelled:
        print(f"{label}\t{item}")
    if summary:
        print(summary)
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
    text = _novelty_text(args, config)
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


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from chargen.checkpoint import load_run
    from chargen.corpus import load_corpus
    from chargen.data import split_ids
    from chargen.evaluate import evaluate_streams, evaluate_windows, token_char_lengths
    from chargen.lines import (
        BOUNDARY,
        evaluate_items,
        item_bounds,
        items_of,
        lines_text,
        split_items,
    )
    from chargen.prepare import is_prepared, open_prepared

    config, tokenizer, model = load_run(args.run_dir, args.weights)
    if args.onnx_model is not None and args.engine != "onnx":
        raise ConfigError("--onnx-model goes with --engine onnx")
    if args.engine == "onnx":  # the exported graph behind the model interface, step by step
        from chargen.onnx_engine import default_path, open_onnx_engine

        path = args.onnx_model if args.onnx_model is not None else default_path(args.run_dir)
        model = open_onnx_engine(path, model, tokenizer)  # type: ignore[assignment]
    data = config.data
    source = args.source or data.source
    if is_prepared(source):
        prepared = open_prepared(source)
        if bool(prepared.meta.get("lines", False)) != data.lines:
            said = ("with", "without") if data.lines else ("without", "with")
            raise ConfigError(
                f"{source} was prepared {said[1]} --lines, {args.run_dir} trained {said[0]} it; "
                "evaluate data prepared the way the run was trained"
            )
        if prepared.tokenizer.to_dict() != tokenizer.to_dict():
            raise ConfigError(
                f"{source}: prepared with another vocabulary than {args.run_dir}'s model"
            )
        ids = prepared.ids
    else:
        encoding = (
            args.encoding
            if args.encoding is not None
            else (data.encoding if args.source is None else None)
        )
        corpus = load_corpus(
            source,
            encoding=encoding,
            errors=args.errors or data.errors,
            lowercase=data.lowercase if args.lowercase is None else args.lowercase,
            data_dir=args.data_dir or data.data_dir,
            progress=False,
        )
        text = lines_text(items_of(corpus.text)) if data.lines else corpus.text
        ids = tokenizer.encode(text, unknown=args.unknown)
    lengths = token_char_lengths(tokenizer.vocab)
    if data.lines:  # whole items, each from a fresh state; the run's fixed random split
        bounds = item_bounds(ids, tokenizer.vocab.index(BOUNDARY))
        _, val_items = split_items(len(bounds) - 1, config.train.val_fraction)
        chosen = np.arange(len(bounds) - 1) if args.all else val_items
        result = evaluate_items(model, ids, bounds, chosen, lengths, max_tokens=len(ids))
        part = "every item" if args.all else f"the {len(val_items):,} validation items"
        scored = f"{part} of {source}"
    else:
        scored = "the whole text"
        if not args.all:
            _, ids = split_ids(ids, config.train.val_fraction)
            scored = f"validation split (last {config.train.val_fraction * 100:g}% of the tokens)"
        scored = f"{scored} of {source}"
        if len(ids) < 2:
            raise ConfigError(f"{source}: too little text to evaluate ({len(ids)} tokens)")
        if config.train.batching == "windows":
            result = evaluate_windows(
                model,
                ids,
                lengths,
                maxlen=config.train.maxlen,
                step=config.train.window_step,
                max_tokens=len(ids),
            )
        else:
            result = evaluate_streams(model, ids, lengths, max_tokens=len(ids))
    if args.json:
        print(
            json.dumps(
                {
                    "nats_per_char": result.nats_per_char,
                    "bits_per_char": result.bits_per_char,
                    "chars": result.chars,
                    "nats_per_token": result.nats_per_token,
                    "tokens": result.tokens,
                    "source": source,
                    "split": "all" if args.all else "validation",
                    "scored": scored,
                }
            )
        )
    else:
        print(
            f"{scored}: {result.nats_per_char:.4f} nats/char, {result.bits_per_char:.4f} bits/char "
            f"over {result.chars:,} chars"
        )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from chargen.prepare import NOVELTY_CHAR_ONLY, NOVELTY_NOT_LINES, build_novelty_index, prepare

    if args.novelty_index and args.tokenizer != "char":
        raise ConfigError(NOVELTY_CHAR_ONLY)
    if args.novelty_index and args.lines:
        raise ConfigError(NOVELTY_NOT_LINES)
    meta = prepare(
        args.source,
        args.out,
        encoding=args.encoding,
        errors=args.errors,
        lowercase=args.lowercase,
        tokenizer=args.tokenizer,
        max_vocab=args.max_vocab,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
        progress=not args.quiet,
        lines=args.lines,
    )
    items, lines_flag = (f", {meta['items']:,} items", " --lines") if args.lines else ("", "")
    print(
        f"{args.out}: {meta['tokens']:,} tokens ({meta['dtype']}), {meta['chars']:,} chars"
        f"{items}, vocabulary {meta['vocab_size']:,}; train with: chargen train {args.out} "
        f"--out RUN_DIR{lines_flag}"
    )
    if args.novelty_index:
        index = build_novelty_index(args.out)
        print(
            f"{index['path']}: novelty index over the {index['chars']:,} characters of the "
            f"training split, {index['bytes'] / 1e6:.1f} MB, built in {index['seconds']:.1f} s"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from chargen.server.app import ServerLimits, create_app
        from chargen.server.threads import use_threads
    except ImportError:
        raise ConfigError(
            "serving needs FastAPI and uvicorn: pip install 'chargen[serve]'"
        ) from None
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [1, 65535], got {args.port}")
    for flag, value in (("--max-queue", args.max_queue), ("--max-length", args.max_length)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
    limits = ServerLimits(
        max_queue=args.max_queue, max_length=args.max_length, timeout_s=args.timeout
    )
    if not (math.isfinite(args.follow) and args.follow >= 0):
        raise ConfigError(f"--follow must be a number of seconds >= 0, got {args.follow}")
    threads = use_threads(args.threads)
    app = create_app(args.run_dir, limits, args.cors_origin, follow_s=args.follow or None)
    print(
        f"chargen: serving {args.run_dir} on http://{args.host}:{args.port}/ (API docs at /docs; "
        f"{threads} compute thread{'s' if threads > 1 else ''})",
        file=sys.stderr,
    )
    # SIGTERM ends the server within about 2 s whatever is in flight: uvicorn waits at most
    # 1 s for open connections (streams included) before cancelling them, then the batcher
    # ends what is left; past limit_concurrency connections uvicorn answers 503 at once
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=1,
        limit_concurrency=4 * limits.max_queue + 16,
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from chargen.plots import plot_curves

    plot_curves(args.run_dir, args.out)
    print(f"curves written to {args.out}", file=sys.stderr)
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from chargen.corpus import list_corpora

    for entry in list_corpora(args.data_dir):
        print(f"{entry['name']:<16} {entry['description']}\n{'':<16} from: {entry['origin']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from chargen.api import build_configs
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


def _add_decoding_flags(p: argparse.ArgumentParser, encoding_default: str = "utf-8") -> None:
    """--encoding, --errors and --lowercase for a text that is not the run's own corpus."""
    p.add_argument("--encoding", help=f"text encoding (default {encoding_default})")
    p.add_argument(
        "--errors",
        choices=("strict", "replace", "ignore"),
        help="undecodable bytes (default: the run's policy, strict unless trained otherwise)",
    )
    p.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="lower-case the text (default: as the run's training text was)",
    )


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from chargen.config import PRESETS, DataConfig, ModelConfig, TrainConfig
    from chargen.sampling_config import SamplingConfig

    parser = _Parser(
        prog="chargen", description="Train language models on any text and generate from them."
    )
    parser.add_argument("--version", action="version", version=f"chargen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a model on a text source")
    p.add_argument(
        "source", nargs="?", help="file, folder, glob or corpus name (see: chargen corpora)"
    )
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="starting configuration (default: auto, sized to the corpus, budget and machine; "
        "flags given win over it)",
    )
    _add_budget(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    add_config_flags(p, DataConfig, "data")
    add_config_flags(p, ModelConfig, "model")
    add_config_flags(p, TrainConfig, "training")
    p.set_defaults(func=cmd_train)

    from chargen.escapes import HELP as ESCAPES_HELP

    p = sub.add_parser(
        "generate",
        help="generate text from a trained run",
        description="Generate text from a trained run. " + ESCAPES_HELP,
    )
    p.add_argument("run_dir")
    p.add_argument("--prompt", default="", help="text to continue (escapes read, see above)")
    p.add_argument("--length", type=int, default=400, help="tokens to generate per sample")
    p.add_argument(
        "--temperature", type=float, nargs="+", default=[1.0], help="one or more; 0 is greedy"
    )
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument(
        "--seed",
        type=int,
        help="sample i uses seed + i (default: a fresh random seed, printed to stderr)",
    )
    p.add_argument(
        "--stop", nargs="+", help='stop a sample at any of these strings (escapes read: "\\n\\n")'
    )
    p.add_argument(
        "--no-escapes",
        action="store_true",
        help="take --prompt, --stop, --ban-chars, --ban-strings and --logit-bias literally",
    )
    p.add_argument(
        "--unknown",
        choices=("warn", "drop", "error"),
        default="warn",
        help="prompt symbols missing from the vocabulary",
    )
    p.add_argument(
        "--format",
        choices=("text", "lines", "jsonl"),
        help="text (prose default): samples as written; lines (--lines runs' default): one "
        "sample per line, line breaks in prose written \\n; jsonl: one object per token "
        "(prose) or per item",
    )
    p.add_argument(
        "--novelty",
        action="store_true",
        help="label each item train, val or new (a summary on stderr); for prose, report the "
        "longest span copied from the training text",
    )
    p.add_argument(
        "--only-new",
        action="store_true",
        help="--lines runs: draw until --num-samples items are new (at most 20 draws per item)",
    )
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--beams", type=int, default=1, help="beam search with this width (1: sample)")
    p.add_argument(
        "--length-penalty", type=float, default=1.0, help="beam score = sum log p / length**this"
    )
    p.add_argument(
        "--engine",
        choices=("auto", "torch", "numpy", "onnx"),
        default="auto",
        help="auto (default): numpy for LSTM/GRU on the CPU, else torch; onnx: the graph of "
        "`chargen export` run by onnxruntime (the same tokens; needs chargen[export])",
    )
    p.add_argument(
        "--onnx-model", metavar="PATH", help="--engine onnx: the graph (default RUN/model.onnx)"
    )
    add_config_flags(p, SamplingConfig, "sampling", skip=frozenset({"temperature"}))
    p.set_defaults(func=cmd_generate)  # chargen.cli_generate

    p = sub.add_parser(
        "inspect",
        help="the next-token distribution at several temperatures",
        description="The next-token distribution after --prompt at several temperatures. "
        + ESCAPES_HELP,
    )
    p.add_argument("run_dir")
    p.add_argument("--prompt", default="", help="text before the next token (escapes read)")
    p.add_argument("--no-escapes", action="store_true", help="take --prompt literally")
    p.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        help="temperatures side by side (default 0.2 0.5 1.0 1.2); with sampling rules, the one "
        "temperature of the chain whose stages are shown (default 1)",
    )
    p.add_argument("--top", type=int, default=10, help="candidates to show")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--plot", help="also draw the table to this PNG file (matplotlib)")
    p.add_argument("--unknown", choices=("warn", "drop", "error"), default="warn")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    add_config_flags(
        p, SamplingConfig, "sampling rules (the X-ray)", skip=frozenset({"temperature"})
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("score", help="bits per character of a text under a run's model")
    p.add_argument("run_dir")
    p.add_argument("file")
    p.add_argument("--html", help="write a page colouring every character by its surprisal")
    _add_decoding_flags(p)
    p.add_argument("--unknown", choices=("warn", "drop", "error"), default="warn")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument(
        "--copies",
        action="store_true",
        help="with --html: underline the spans of the text copied verbatim from the run's "
        "training text (see: chargen novelty --help)",
    )
    p.add_argument(
        "--min-span",
        type=int,
        default=20,
        metavar="N",
        help="--copies marks copied spans of at least N characters (default 20)",
    )
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "novelty",
        help="what of a text was copied verbatim from a run's training text",
        description="The longest span of a text that appears verbatim in the run's training "
        "text (the part of its corpus it trained on), with its length and offsets in "
        "characters, then every copied span of at least --min-span characters. For a --lines "
        "run each line of the text is first labelled train, val or new (an exact match with a "
        "training or validation item), with a summary line; the spans are then looked up in "
        "the training items joined by newlines. The index of the training text is built in "
        "memory on each call (0.04-0.06 s per MB of text, 5 bytes per character) unless the "
        "run's source is a folder written by `chargen prepare --novelty-index`, which is "
        "memory-mapped; a query takes 0.1-0.3 s per 10K characters.",
    )
    p.add_argument("run_dir")
    p.add_argument("file", nargs="?", default="-", help="text to check (- or absent: stdin)")
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"longest": {"length", "text_offset", "corpus_offset"}, "spans": [...]} '
        '(a --lines run adds "items" and "summary")',
    )
    p.add_argument(
        "--min-span",
        type=int,
        default=20,
        metavar="N",
        help="list copied spans of at least N characters (default 20)",
    )
    _add_decoding_flags(p)
    p.add_argument("--data-dir", help="folder of the run's named corpus (default: the run's)")
    p.set_defaults(func=cmd_novelty)

    p = sub.add_parser(
        "neurons",
        help="see inside the model: the units that follow quotes, brackets, line length...",
        description="Record every unit of the run's model (LSTM: each layer's cell and hidden "
        "state; GRU: each layer's hidden state; Transformer: each block's MLP hidden units) "
        "after each character of TEXT, rank the units most correlated (Pearson r) with "
        "features of the text (position in the line, inside double / single quotes, ( ) [ ] "
        "{ } depth, start of a word, first character of a line, digit, upper case, "
        "indentation, and any --feature), print the top --top per feature, and optionally "
        "write a self-contained page: the text coloured by a chosen unit with the model's "
        "top-5 next-character guesses under each character, and select-a-span-find-its-units. "
        "Units are named LAYER:KIND:UNIT, counting from 0.",
    )
    p.add_argument("run_dir")
    p.add_argument("file", metavar="TEXT", help="text to read (- for stdin)")
    p.add_argument("--html", metavar="OUT", help="write the neuron lab page to OUT")
    p.add_argument(
        "--json",
        action="store_true",
        help='print [{"feature", "layer", "kind", "unit", "r"}, ...]: the top units per '
        "feature by |r|, features in order",
    )
    p.add_argument(
        "--feature",
        action="append",
        metavar="NAME=REGEX",
        help="also rank units against 1 inside a match of REGEX, 0 outside (repeatable)",
    )
    p.add_argument("--top", type=int, default=5, help="units listed per feature (default 5)")
    p.add_argument(
        "--units",
        action="append",
        metavar="L:KIND:U,...",
        help="--html: also embed these units when not all of them fit the page (e.g. 0:cell:12)",
    )
    p.add_argument("--encoding", help="text encoding of TEXT (default utf-8)")
    p.add_argument(
        "--errors",
        choices=("strict", "replace", "ignore"),
        help="undecodable bytes (default: the run's policy)",
    )
    p.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="lower-case TEXT (default: as the run's training text was)",
    )
    p.add_argument("--unknown", choices=("warn", "drop", "error"), default="warn")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.set_defaults(func=cmd_neurons)

    p = sub.add_parser(
        "eval",
        help="validation loss of a run (nats and bits per char)",
        description="Loss of a run's model on the validation split (the last --val-fraction of "
        "the tokens, 10% by default) of its own corpus or of SOURCE; --all scores the whole "
        "text. The output names the part scored.",
    )
    p.add_argument("run_dir")
    p.add_argument(
        "source",
        nargs="?",
        help="text to score, its validation split unless --all (default: the run's own corpus)",
    )
    p.add_argument(
        "--all", action="store_true", help="score the whole text, not its validation split"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_decoding_flags(p, "the run's for its own corpus, else utf-8")
    p.add_argument("--data-dir")
    p.add_argument("--unknown", choices=("drop", "error", "warn"), default="warn")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument(
        "--engine",
        choices=("torch", "onnx"),
        default="torch",
        help="torch (default): the run's model; onnx: the graph of `chargen export` run by "
        "onnxruntime one token at a time (needs chargen[export])",
    )
    p.add_argument(
        "--onnx-model", metavar="PATH", help="--engine onnx: the graph (default RUN/model.onnx)"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("prepare", help="tokenise a corpus larger than memory into a data folder")
    p.add_argument("source", help="file, folder, glob or corpus name")
    p.add_argument(
        "--out", required=True, help="data folder to write (tokens.bin, tokenizer.json, meta.json)"
    )
    p.add_argument("--encoding")
    p.add_argument("--errors", choices=("strict", "replace", "ignore"), default="strict")
    p.add_argument("--lowercase", action="store_true")
    p.add_argument("--tokenizer", choices=("char", "word", "bpe"), default="char")
    p.add_argument("--max-vocab", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--lines",
        action="store_true",
        help="each non-empty line is one item, stripped, as `chargen train --lines` reads it "
        "(train the folder with --lines)",
    )
    p.add_argument(
        "--novelty-index",
        action="store_true",
        help="char tokenizer only: also store the suffix array of the training split (the "
        "first 90%%) in OUT/novelty/ for `chargen novelty` and `score --copies` to memory-map "
        "(0.04-0.06 s per MB to build, 5 bytes per character on disk)",
    )
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("serve", help="the playground: a web page and an HTTP API over a run")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-queue", type=int, default=64, help="requests in flight before 429")
    p.add_argument(
        "--max-length", type=int, default=2000, help="longest generation one request may ask"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one request may run")
    p.add_argument(
        "--cors-origin", action="append", help="allow this origin (repeatable); none by default"
    )
    p.add_argument(
        "--follow",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="while the run trains, look this often for a new best and serve it (0: never)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="threads of the model step (default: one less than the cores, at least 1: the "
        "other core writes to the clients)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("plot", help="draw a run's training curves to a PNG (matplotlib)")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("corpora", help="list the named corpora and where each comes from")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_corpora)

    p = sub.add_parser(
        "demo", help="train on python-docs for two minutes and print samples (offline)"
    )
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--out", help="run folder (default: a new temporary folder)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_demo)
    add_export_parser(sub)  # chargen.cli_export
    return parser


def _one_line_warnings(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    print(f"chargen: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    warnings.showwarning = _one_line_warnings
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (one line, status 2)
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except ChargenError as exc:
        print(f"chargen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chargen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
