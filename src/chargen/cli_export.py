"""``chargen export RUN [--onnx PATH] [--web DIR] [--quantize int8]``: the run's one-token
step as an ONNX graph, and a static site that generates with it in the browser.

Writes PATH (default RUN/model.onnx) after checking the graph with ``onnx.checker`` and
running it with onnxruntime on random states against chargen's own step (see
``chargen.export_onnx`` for the graph's inputs and outputs). ``--web DIR`` writes the site
(``chargen.export_web``) instead, or as well when ``--onnx`` is given too. ``--quantize int8``
stores the weight matrices as int8. Needs ``chargen[export]``; ``--web`` also needs the npm
package onnxruntime-web (``--ort-dir``).
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
    "written. Generate with it: chargen generate RUN --engine onnx. --web DIR writes a static "
    "site that generates in the browser (onnxruntime-web's wasm backend, copied into DIR from "
    "its npm package; serve DIR with any static server). --quantize int8 stores the weight "
    "matrices as int8 (about 4x smaller). Needs: pip install 'chargen[export]'."
)


def add_export_parser(sub: Any) -> None:
    """Register ``chargen export`` on the ``chargen`` subparsers."""
    p = sub.add_parser(
        "export",
        help="the run's model as an ONNX graph, or a static web page that generates with it",
        description=DESCRIPTION,
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--onnx",
        metavar="PATH",
        help="the .onnx file to write (default: RUN/model.onnx, where --engine onnx looks; "
        "with --web only when given)",
    )
    p.add_argument(
        "--web",
        metavar="DIR",
        help="write a static site to DIR (index.html, the model, its vocabulary, a sampler and "
        "onnxruntime-web) that generates in the browser: python -m http.server -d DIR",
    )
    p.add_argument(
        "--ort-dir",
        metavar="PATH",
        help="--web: an installed onnxruntime-web/dist folder (default: ./node_modules/"
        "onnxruntime-web/dist, then the global npm root's)",
    )
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8: weight matrices as int8 with a float32 scale per row (weight-only; about "
        "4x smaller, validation loss within about 1%%)",
    )
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from chargen.export_onnx import require_onnx

    require_onnx()  # before loading anything: the missing extra is the first thing said
    web = getattr(args, "web", None)
    quantize = getattr(args, "quantize", None)
    ort = None
    if web is not None:
        from chargen.export_web import check_site_dir, find_ort_dist

        ort = find_ort_dist(getattr(args, "ort_dir", None))  # a missing package: said first
        check_site_dir(Path(web))
    elif getattr(args, "ort_dir", None) is not None:
        from chargen.errors import ConfigError

        raise ConfigError("--ort-dir goes with --web DIR")
    from chargen.atomic import atomic_write_bytes
    from chargen.checkpoint import load_run, weights_file
    from chargen.export_onnx import OPSET, export_onnx
    from chargen.onnx_engine import default_path

    config, tokenizer, model = load_run(args.run_dir, args.weights)
    data, diff = export_onnx(model, tokenizer, quantize)
    run = Path(args.run_dir)
    source = weights_file(run, args.weights)
    family = config.model.family
    if family == "transformer":
        family += f" ({config.model.positions} positions)"
    weights = "int8 weights, " if quantize else ""
    against = "chargen's with the same int8 weights" if quantize else "chargen's"
    if args.onnx or web is None:
        path = Path(args.onnx) if args.onnx else default_path(args.run_dir)
        atomic_write_bytes(path, data)
        print(
            f"wrote {path}: the {family} step graph, opset {OPSET}, {weights}"
            f"{len(data) / 1e6:.2f} MB ({source.name}: {source.stat().st_size / 1e6:.2f} MB); "
            f"logits within {diff:.1e} (relative) of {against} on random states. Generate with: "
            f"chargen generate {args.run_dir} --engine onnx"
            + ("" if not args.onnx else f" --onnx-model {path}"),
            file=sys.stderr,
        )
    if web is not None:
        from chargen.export_web import write_site
        from chargen.models import count_parameters

        assert ort is not None
        site = write_site(
            Path(web), run, config, tokenizer, data, ort, quantize, count_parameters(model)
        )
        print(
            f"wrote {web}: a static site of {site.total / 1e6:.1f} MB ({site.files} files: the "
            f"{family} model{' (int8 weights)' if quantize else ''} {len(data) / 1e6:.2f} MB, "
            f"onnxruntime-web {ort.version} "
            f"wasm {site.runtime / 1e6:.1f} MB, page and sampler {site.page / 1e3:.0f} kB); "
            f"logits within {diff:.1e} (relative) of {against}. Open it through any static "
            f"server: python -m http.server -d {web}",
            file=sys.stderr,
        )
    return 0
