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
