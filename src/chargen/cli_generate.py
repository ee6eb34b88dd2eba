"""``chargen generate``: samples of a prose run, or items of a ``--lines`` run, in three formats.

* ``text`` (prose default): each sample as it is made, the prompt first; with several samples
  or temperatures a header line (``------ temperature: ...``) before each.
* ``lines`` (``--lines`` default): one sample per line. A ``--lines`` run prints its items as
  they are; a prose sample has its backslashes and line breaks written as escapes (``\\n``), so
  ``decode_escapes`` gives it back. With ``--novelty`` an item is followed by a tab and its
  label (``train``, ``val`` or ``new``).
* ``jsonl``: prose, one object per token (``token``, ``logprob``, ``entropy``); items, one
  object per item (``text``, ``seed``, ``logprob``, ``tokens``, and ``novelty`` when asked).

The seed line, novelty summaries and notes go to stderr; with items, so do the temperature
headers, so ``chargen generate RUN > names.txt`` holds names and nothing else.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from typing import Any, TextIO

from chargen.errors import ConfigError


def cmd_generate(args: argparse.Namespace) -> int:
    from chargen.escapes import decode_escapes
    from chargen.lite import PlainRun
    from chargen.prompt_ids import check_request

    check_request(args.length, args.num_samples)
    if not args.no_escapes:  # "\n\n" on the command line means two newlines
        args.prompt = decode_escapes(args.prompt, "--prompt")
        args.stop = [decode_escapes(s, "--stop") for s in args.stop or ()]
        # --regex keeps its backslashes: they are the pattern's own (\d, \n, \.)
        if args.ban_chars is not None:
            args.ban_chars = decode_escapes(args.ban_chars, "--ban-chars")
        for flag in ("ban_strings", "logit_bias"):
            if getattr(args, flag) is not None:
                name = "--" + flag.replace("_", "-")
                setattr(args, flag, [decode_escapes(s, name) for s in getattr(args, flag)])
        if args.dry_sequence_breakers is not None:
            flag = "--dry-sequence-breakers"
            args.dry_sequence_breakers = [
                decode_escapes(s, flag) for s in args.dry_sequence_breakers
            ]

    if plain_request(args):  # no torch to import: answered in NumPy (lite.py)
        plain = PlainRun.open(args.run_dir, args.weights)
        if plain is not None:
            return _plain_out(args, plain)
    return _chain_out(args)


def plain_request(args: argparse.Namespace) -> bool:
    """Whether ``chargen generate``'s arguments ask for nothing but ``lite.PlainRun``'s work:
    temperature alone, no stop strings, beams, novelty or other engine, text or lines out."""
    from chargen.cli_options import given_fields
    from chargen.sampling_config import SamplingConfig

    return (
        set(given_fields(args, SamplingConfig)) <= {"temperature"}
        and not args.stop
        and args.beams == 1
        and not args.novelty
        and not args.only_new
        and (getattr(args, "engine", None) or "auto") in ("auto", "numpy")
        and getattr(args, "onnx_model", None) is None
        and (args.format or "text") in ("text", "lines")
    )


def _plain_out(args: argparse.Namespace, plain: Any) -> int:
    """``chargen generate`` of a plain request (``plain_request``) by ``lite.PlainRun``."""
    from chargen.sampling_config import SamplingConfig, _check_temperature

    for t in args.temperature:
        _check_temperature(t)
    _fresh_seed(args, plain.tokenizer)
    fmt = args.format or "text"
    many = len(args.temperature) > 1 or args.num_samples > 1
    for t in args.temperature:
        cfg = SamplingConfig(temperature=t)
        _prose_out(args, None, plain.tokenizer, cfg, fmt, None, sys.stdout, many, plain.generate)
    return 0


def _fresh_seed(args: argparse.Namespace, tokenizer: Any) -> None:
    """Without ``--seed``, a fresh draw each call, said aloud so any sample can be redrawn."""
    from chargen.prompt_ids import encode_prompt

    if args.seed is None:
        # a prompt generate would refuse fails here, before the seed line (errors stay one line)
        encode_prompt(tokenizer, args.prompt, "error" if args.unknown == "error" else "drop")
        args.seed = secrets.randbelow(2**32)
        print(f"seed: {args.seed} (reproduce with --seed {args.seed})", file=sys.stderr, flush=True)


def _chain_out(args: argparse.Namespace) -> int:
    """``chargen generate`` of any request, by the torch model and its sampling chain."""
    from chargen.chain import SamplingChain
    from chargen.checkpoint import load_run
    from chargen.clamp import Clamps
    from chargen.cli_options import given_fields
    from chargen.generate import token_strings
    from chargen.sampling import SamplingConfig

    options = given_fields(args, SamplingConfig)
    options.pop("temperature", None)
    configs = [SamplingConfig(temperature=t, **options).validate() for t in args.temperature]
    config, tokenizer, model = load_run(args.run_dir, args.weights)
    model, engine = _engine(args, model, tokenizer, bool(config.data.lines))
    for cfg in configs:  # constraints this vocabulary cannot meet fail before any output
        SamplingChain(cfg, vocab=token_strings(tokenizer))
    Clamps.build(model, configs[0].clamp)  # so do units this model lacks (one clamp for all)
    if args.beams != 1:  # beam_search refuses a width below 1 in one line
        return _print_beams(args, model, tokenizer, configs[0], bool(config.data.lines))
    items = config.data.lines
    if args.only_new and not items:
        raise ConfigError("--only-new needs a run trained with --lines (one item per line)")
    _fresh_seed(args, tokenizer)
    novelty = None
    if args.novelty or args.only_new:
        from chargen.run_novelty import RunNovelty

        novelty = RunNovelty.open(args.run_dir, config, tokenizer)
    fmt = args.format or ("lines" if items else "text")
    for cfg in configs:
        if items:
            if len(configs) > 1:
                print(f"------ temperature: {cfg.temperature}", file=sys.stderr, flush=True)
            _items_out(args, model, tokenizer, cfg, fmt, novelty, sys.stdout)
        else:
            many = len(configs) > 1 or args.num_samples > 1
            _prose_out(args, model, tokenizer, cfg, fmt, novelty, sys.stdout, many, None, engine)
    return 0


def _engine(args: argparse.Namespace, model: Any, tokenizer: Any, items: bool) -> tuple[Any, str]:
    """The model generation runs and ``generate``'s engine, for ``--engine``.

    ``onnx``: the run's exported step graph (``chargen.onnx_engine``) behind the model
    interface, drawn by the torch loop. ``torch`` / ``numpy`` choose the loop of prose samples;
    items (``--lines``) and beams choose their own.
    """
    engine = getattr(args, "engine", None) or "auto"
    onnx_model = getattr(args, "onnx_model", None)
    if onnx_model is not None and engine != "onnx":
        raise ConfigError("--onnx-model goes with --engine onnx")
    if engine == "onnx":
        from chargen.onnx_engine import default_path, open_onnx_engine

        path = onnx_model if onnx_model is not None else default_path(args.run_dir)
        return open_onnx_engine(path, model, tokenizer), "torch"
    if engine != "auto" and (items or args.beams != 1):
        raise ConfigError(
            f"--engine {engine} chooses the engine of prose samples; "
            f"{'--lines runs' if items else '--beams'} take --engine auto or onnx"
        )
    if engine == "numpy":
        from chargen.numpy_generation import supports

        if not supports(model):  # said before the seed line: errors stay one line
            raise ConfigError("the numpy engine runs float32 LSTM/GRU models on the CPU only")
    return model, engine


def _items_out(
    args: argparse.Namespace,
    model: Any,
    tokenizer: Any,
    cfg: Any,
    fmt: str,
    novelty: Any,
    out: TextIO,
) -> None:
    from chargen.items import draw_items
    from chargen.novelty import ItemIndex

    found, labels = draw_items(
        model,
        tokenizer,
        args.prompt,
        novelty.items if novelty is not None else None,
        count=args.num_samples,
        length=args.length,
        sampling=cfg,
        seed=args.seed,
        stop=args.stop or (),
        only_new=args.only_new,
        unknown=args.unknown,
    )
    for item in found:
        if fmt == "jsonl":
            out.write(json.dumps(item.to_dict(cfg.temperature), ensure_ascii=False) + "\n")
        else:
            out.write(item.text + (f"\t{item.label}" if args.novelty else "") + "\n")
    out.flush()
    if labels:
        print(ItemIndex.summary(labels), file=sys.stderr)


def _prose_out(
    args: argparse.Namespace,
    model: Any,
    tokenizer: Any,
    cfg: Any,
    fmt: str,
    novelty: Any,
    out: TextIO,
    many: bool,
    generate: Any = None,
    engine: str = "auto",
) -> None:
    """Each sample as ``fmt`` says; ``generate``: ``generate.generate`` or the NumPy plain
    path's (``lite.PlainRun.generate``), the same keywords and samples."""
    from chargen.escapes import encode_escapes
    from chargen.token_record import token_records

    if generate is None:
        from chargen.generate import generate

    for row in range(args.num_samples):
        seed = args.seed + row
        if fmt == "text" and many:
            print(f"------ temperature: {cfg.temperature}  sample {row + 1}  seed {seed}", file=out)
        if fmt == "text":
            out.write(args.prompt)
            out.flush()

        emit = _Writer(out)

        (sample,) = generate(
            model,
            tokenizer,
            args.prompt,
            length=args.length,
            sampling=cfg,
            num_samples=1,
            seed=seed,
            stop=args.stop or (),
            unknown=args.unknown,
            on_text=emit if fmt == "text" else None,
            engine=engine,
        )
        report = novelty.report(args.prompt + sample.text) if novelty is not None else None
        if fmt == "text":
            out.write("\n")
        elif fmt == "lines":
            out.write(encode_escapes(args.prompt + sample.text) + "\n")
        else:
            head = {"sample": row, "seed": seed, "temperature": cfg.temperature}
            for record in token_records(sample):
                out.write(json.dumps({**head, **record.to_dict()}, ensure_ascii=False) + "\n")
            if report is not None:
                summary = {"sample": row, "seed": seed, "text": sample.text, "novelty": report}
                out.write(json.dumps(summary, ensure_ascii=False) + "\n")
        out.flush()
        if report is not None:
            print(_copy_line(row, report), file=sys.stderr, flush=True)


class _Writer:
    """``on_text`` for a stream: a terminal sees each token at once; a file or pipe gets the
    text in buffered writes, flushed at least every ``FLUSH_S`` (so ``| tee`` stays live)."""

    FLUSH_S = 0.1

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.flushed = time.monotonic()

    def __call__(self, _row: int, text: str) -> None:
        self.out.write(text)
        if self.live:
            self.out.flush()
        elif (now := time.monotonic()) - self.flushed >= self.FLUSH_S:
            self.out.flush()
            self.flushed = now


def _copy_line(row: int, report: dict[str, Any]) -> str:
    longest = report["longest"]
    spans = len(report["spans"])
    return (
        f"novelty: sample {row + 1}: longest copy {longest['length']} chars "
        f"(text offset {longest['text_offset']}, training text offset "
        f"{longest['corpus_offset']}); {spans} copied span(s) of 20+ chars"
    )


def _print_beams(
    args: argparse.Namespace, model: Any, tokenizer: Any, cfg: Any, lines: bool
) -> int:
    """The best beams; of a ``--lines`` run, whole items (headers on stderr, as for items)."""
    from chargen.generate import beam_generate

    found = beam_generate(
        model,
        tokenizer,
        args.prompt,
        beams=args.beams,
        length=args.length,
        length_penalty=args.length_penalty,
        sampling=cfg,
        unknown=args.unknown,
        lines=lines,
    )
    for rank, sample in enumerate(found[: args.num_samples]):
        if args.format == "jsonl":
            print(
                json.dumps(
                    {"beam": rank, "text": sample.text, "score": sample.logprobs[0]},
                    ensure_ascii=False,
                )
            )
        else:
            if args.num_samples > 1:
                header = f"------ beam {rank + 1}  score {sample.logprobs[0]:.4f}"
                print(header, file=sys.stderr if lines else sys.stdout, flush=True)
            print(args.prompt + sample.text, flush=True)
    return 0
