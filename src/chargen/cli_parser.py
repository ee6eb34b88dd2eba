"""The ``chargen`` argument parser: every command with its flags, help text and the function
that runs it (``build_parser``). Configuration and sampling flags come from the dataclass fields
(``cli_options.add_config_flags``); ``docs/flags.md`` is generated from this parser
(``chargen.flags_doc``).
"""

from __future__ import annotations

import argparse

from chargen.cli_data import cmd_corpora, cmd_prepare
from chargen.cli_eval import cmd_eval, cmd_score
from chargen.cli_export import add_export_parser
from chargen.cli_generate import cmd_generate
from chargen.cli_inspect import cmd_inspect, cmd_neurons, cmd_novelty
from chargen.cli_options import _add_budget, _add_decoding_flags, _Parser, add_config_flags
from chargen.cli_serve import cmd_serve
from chargen.cli_train import cmd_demo, cmd_plot, cmd_train
from chargen.version import __version__


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
    p.add_argument("file", help="the text to score: a file, or - for standard input")
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
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request's head (request line and headers) must arrive within this, else 408",
    )
    p.add_argument(
        "--client-connections",
        type=int,
        metavar="N",
        help="connections one client address may hold open (default: half the server's "
        "limit, 2 x --max-queue + 8); behind a reverse proxy every client has its address",
    )
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
