"""``chargen export RUN [--onnx PATH]``: the run's one-token step as an ONNX graph.

Writes PATH (default RUN/model.onnx) after checking the graph with ``onnx.checker`` and
running it with onnxruntime on random states against chargen's own step (see
``chargen.export_onnx`` for the graph's inputs and outputs). Needs ``chargen[export]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = (
    "Write the run's one-token step as an ONNX graph (opset 17, plain operators: no ONNX "
    "LSTM/GRU): inputs ids (batch,) int64 and the state (LSTM h, c; GRU h; transformer k, v, "
    "pos, or pos, tokens with learned positions), outputs logits (batch, vocab) and the new "
    "state (h_out, ...). Checked against chargen's own step with onnxruntime before it is "
    "written. Generate with it: chargen generate RUN --engine onnx. Needs: pip install "
    "'chargen[export]'."
)


def add_export_parser(sub: Any) -> None:
    """Register ``chargen export`` on the ``chargen`` subparsers."""
    p = sub.add_parser("export", help="the run's model as an ONNX graph", description=DESCRIPTION)
    p.add_argument("run_dir")
    p.add_argument(
        "--onnx",
        metavar="PATH",
        help="the .onnx file to write (default: RUN/model.onnx, where --engine onnx looks)",
    )
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from chargen.export_onnx import require_onnx

    require_onnx()  # before loading anything: the missing extra is the first thing said
    from chargen.atomic import atomic_write_bytes
    from chargen.checkpoint import BEST, WEIGHTS, load_run
    from chargen.export_onnx import OPSET, export_onnx
    from chargen.onnx_engine import default_path

    config, tokenizer, model = load_run(args.run_dir, args.weights)
    path = Path(args.onnx) if args.onnx else default_path(args.run_dir)
    data, diff = export_onnx(model, tokenizer)
    atomic_write_bytes(path, data)
    run = Path(args.run_dir)
    source = run / (BEST if args.weights == "best" and (run / BEST).exists() else WEIGHTS)
    family = config.model.family
    if family == "transformer":
        family += f" ({config.model.positions} positions)"
    print(
        f"wrote {path}: the {family} step graph, opset {OPSET}, {len(data) / 1e6:.2f} MB "
        f"({source.name}: {source.stat().st_size / 1e6:.2f} MB); logits within {diff:.1e} "
        "(relative) of chargen's on random states. Generate with: chargen generate "
        f"{args.run_dir} --engine onnx" + ("" if not args.onnx else f" --onnx-model {path}"),
        file=sys.stderr,
    )
    return 0
