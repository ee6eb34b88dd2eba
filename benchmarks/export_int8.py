"""``chargen export --quantize int8`` against the float graph: size, validation loss, speed.

Trains a run (LSTM 2 x 256 on nietzsche by default; ``--run RUN`` takes an existing one),
exports its step graph twice (float32, and ``--quantize int8``: int8 weight matrices with a
scale per row behind ``DequantizeLinear``) and prints, in one table:

* the file size of each, and the ratio;
* validation bits/char of each through the ONNX engine (``chargen eval RUN --engine onnx
  --onnx-model PATH``, the run's own validation split), and of the run's model (torch);
* generation speed in tokens/s of each through ``chargen generate``'s loop with the ONNX
  engine (one stream, temperature 0.8, ``--length`` tokens), and of chargen's default engine
  for reference; and the time of one graph step in onnxruntime alone. Timings are the best
  of ``--repeats`` rounds, every graph timed in each round (a busy moment hits all). (``--engine onnx`` folds each int8 matrix's ``DequantizeLinear`` into
  a float32 matrix when the session loads, so the int8 graph steps at the float one's speed.)

For comparison it adds onnxruntime's own ``quantize_dynamic`` of the float graph (int8
weights and, at every step, uint8 activations: DynamicQuantizeLinear + MatMulInteger). chargen
does not export that form (its accuracy then depends on the CPU's integer kernels), so its row
is measured in this process with ``chargen eval --engine onnx`` and the generation loop, its two
integer operators let through the engine's operator check.

    python benchmarks/export_int8.py [--run RUN | --out DIR] [--steps 1000] [--length 2000]
                                     [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from chargen.checkpoint import load_run  # noqa: E402
from chargen.generate import generate  # noqa: E402
from chargen.onnx_engine import open_onnx_engine  # noqa: E402
from chargen.sampling import SamplingConfig  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def chargen(*args: str) -> str:
    """``python -m chargen ARGS``; its stdout, or the end of its stderr and exit."""
    cmd = [sys.executable, "-m", "chargen", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def train(out: Path, args: argparse.Namespace) -> None:
    data_dir = os.environ.get("CHARGEN_DATA", str(DATA))
    chargen(
        "train", "nietzsche", "--data-dir", data_dir, "--encoding", "latin-1", "--out", out,
        "--overwrite", "--hidden-size", args.hidden_size, "--layers", args.layers, "--steps",
        args.steps, "--batch-size", "16", "--seq-len", "100", "--lr", "3e-3",
        "--sample-length", "0", "--eval-every", args.steps, "--threads", args.threads,
    )  # fmt: skip


CFG = SamplingConfig(temperature=0.8)


def generation_seconds(model, tokenizer, length: int, engine: str, seed: int) -> float:
    """Seconds of chargen's generation loop for ``length`` tokens, one stream, T = 0.8."""
    start = time.perf_counter()
    generate(model, tokenizer, "the ", length=length, sampling=CFG, seed=seed, engine=engine)
    return time.perf_counter() - start


def step_seconds(engine, steps: int) -> float:
    """Seconds per graph step (one row) in onnxruntime alone, over ``steps`` steps."""
    feeds = {p: s.numpy() for p, s in zip(engine.names, engine.initial_state(1), strict=True)}
    feeds["ids"] = np.zeros(1, dtype=np.int64)
    start = time.perf_counter()
    for _ in range(steps):
        engine.session.run(None, feeds)
    return (time.perf_counter() - start) / steps


def open_dynamic(run: Path, float_path: Path, out: Path) -> tuple[object, float]:
    """onnxruntime's quantize_dynamic of the float graph, opened as ``--engine onnx`` opens a
    graph, and its validation bits/char by ``chargen eval --engine onnx``: both in this
    process, its two integer operators let through the engine's operator check."""
    import contextlib
    import io

    from onnxruntime.quantization import QuantType, quantize_dynamic

    import chargen.onnx_engine as onnx_engine
    from chargen.cli import main as cli_main

    logging.disable(logging.WARNING)  # its advice to pre-process the graph first
    quantize_dynamic(str(float_path), str(out), weight_type=QuantType.QInt8, per_channel=True)
    saved = onnx_engine.OPS
    onnx_engine.OPS = saved | {"DynamicQuantizeLinear", "MatMulInteger"}
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = cli_main(
                ["eval", str(run), "--engine", "onnx", "--onnx-model", str(out), "--json"]
            )
        if code != 0:
            raise SystemExit("eval of the quantize_dynamic graph failed")
        _, tokenizer, model = load_run(run)
        engine = open_onnx_engine(out, model, tokenizer)
    finally:
        onnx_engine.OPS = saved
    return engine, json.loads(printed.getvalue())["bits_per_char"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="an existing run (default: train one)")
    parser.add_argument(
        "--out", help="train into this folder and keep it (default: a temporary one)"
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=2000, help="tokens per timed generation")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the best one counts")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe())
    with tempfile.TemporaryDirectory(prefix="chargen-int8-") as scratch:
        folder = Path(scratch)
        run = Path(args.run or args.out or folder / "run")
        if not args.run:
            start = time.perf_counter()
            train(run, args)
            print(f"trained {run}: {time.perf_counter() - start:.0f} s")
        paths = {"float32": folder / "float.onnx", "int8": folder / "int8.onnx"}
        chargen("export", run, "--onnx", paths["float32"])
        chargen("export", run, "--onnx", paths["int8"], "--quantize", "int8")
        config, tokenizer, model = load_run(run)
        m = config.model
        print(
            f"model: {m.family} {m.num_layers} x {m.hidden_size}, vocabulary {m.vocab_size}, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters; onnxruntime "
            f"{__import__('onnxruntime').__version__}; generation: one stream, T = 0.8, "
            f"{args.length} tokens; graph step: one row; {args.threads} thread(s); the best of "
            f"{args.repeats} interleaved rounds"
        )
        # name: (model, generate's engine, file bytes, validation bits/char)
        rows = {
            "the run's model (torch; default engine)": (
                model, "auto", None, json.loads(chargen("eval", run, "--json"))["bits_per_char"]
            ),
        }  # fmt: skip
        for kind, path in paths.items():
            out = chargen("eval", run, "--engine", "onnx", "--onnx-model", path, "--json")
            engine = open_onnx_engine(path, model, tokenizer)
            rows[f"{kind} graph (--engine onnx)"] = (
                engine, "torch", path.stat().st_size, json.loads(out)["bits_per_char"]
            )  # fmt: skip
        dynamic = folder / "dynamic.onnx"
        engine, bits = open_dynamic(run, paths["float32"], dynamic)
        rows["onnxruntime quantize_dynamic (reference)"] = (
            engine, "torch", dynamic.stat().st_size, bits
        )  # fmt: skip
        gen = {name: [] for name in rows}
        steps = {name: [] for name, row in rows.items() if row[1] == "torch"}
        for model_, engine_, _, _ in rows.values():  # warm up
            generation_seconds(model_, tokenizer, 50, engine_, 0)
        for r in range(args.repeats):  # interleaved: a busy moment of the machine hits all
            for name, (model_, engine_, _, _) in rows.items():
                gen[name].append(generation_seconds(model_, tokenizer, args.length, engine_, r))
                if name in steps:
                    steps[name].append(step_seconds(model_, 500))
    names = list(rows)
    base_bytes, base_bits = rows[names[1]][2], rows[names[1]][3]
    print()
    print("| graph | file | smaller | val bits/char | vs float32 graph | tokens/s | graph step |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (_, _, size, bits) in rows.items():
        shown = f"{size / 1e6:.2f} MB" if size else "–"
        ratio = f"{base_bytes / size:.2f}x" if size and size != base_bytes else "–"
        change = f"{(bits - base_bits) / base_bits * 100:+.3f}%" if bits != base_bits else "–"
        speed = args.length / min(gen[name])
        micro = f"{min(steps[name]) * 1e6:.0f} µs" if name in steps else "–"
        print(f"| {name} | {shown} | {ratio} | {bits:.4f} | {change} | {speed:,.0f} | {micro} |")


if __name__ == "__main__":
    main()
