"""The GPU path measured: CUDA, cuDNN LSTM, bf16 autocast and torch.compile on one NVIDIA GPU.

In one run, on ``--device`` (default ``cuda``):

1. **Training throughput** of an LSTM 1024 x 3 (embedding 128, batch ``--batch`` x 128,
   tinyshakespeare's 65 symbols) through chargen's own ``Trainer.train_step`` (cuDNN's LSTM):
   fp32, bf16 autocast, and bf16 with ``torch.compile``. chars/s are medians of CUDA-synchronised
   timings; the baseline is the same fp32 step on this machine's CPU (``--cpu-steps`` steps).
2. **Generation** with that model (untrained weights, temperature 1): one stream and 256
   streams through the torch engine on the GPU, against chargen's NumPy engine on the CPU.
3. **Time to quality**: ``chargen train tinyshakespeare --device cuda --precision bf16`` for
   each ``--run`` (a preset and extra flags) within ``--minutes``; the first evaluation at or
   below ``--target`` nats/char (default 1.47, nanoGPT's shakespeare-char figure) and the
   training wall time it came at.

Without a CUDA device it says so and measures nothing (exit 0): CI never needs a GPU.
``--smoke`` runs every part at toy sizes on any device, to check the script itself.

    python benchmarks/gpu_path.py [--minutes 5] [--run large] [--run "large --hidden-size 1024"]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, eval_records, train_command  # noqa: E402
from training_throughput import chargen_trainer  # noqa: E402

from chargen.config import ModelConfig  # noqa: E402
from chargen.generate import generate  # noqa: E402
from chargen.models import build_model  # noqa: E402
from chargen.tokenizer import build_tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_RUNS = ["large", "large --hidden-size 1024 --dropout 0.35", "transformer"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(
    fn: Callable[[], object], device: torch.device, count: int, repeats: int
) -> float:
    """Median over ``repeats`` of the mean time of ``count`` calls, the device drained each time."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(count):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - start) / count)
    return statistics.median(times)


def training_step(text: str, folder: Path, size: dict, device: str, precision: str, compile_: bool):
    """One chargen ``Trainer.train_step`` per call, for the model and batch in ``size``."""
    step, trainer = chargen_trainer(
        text,
        folder,
        hidden=size["hidden"],
        batch=size["batch"],
        seq_len=size["seq"],
        embed=size["embed"],
        layers=size["layers"],
        lr=2e-3,
        device=device,
        precision=precision,
        compile=compile_,
    )
    return step, trainer.device, size["batch"] * size["seq"]


def throughput(
    text: str, size: dict, device: str, steps: int, cpu_steps: int, repeats: int
) -> None:
    print(
        f"\n## Training: LSTM {size['hidden']} x {size['layers']}, embedding {size['embed']}, "
        f"batch {size['batch']} x {size['seq']}\n"
    )
    print("| device | precision | torch.compile | chars/s | vs CPU fp32 |")
    print("|---|---|---|---:|---:|")
    ways = [("cpu", "fp32", False, cpu_steps)] + [
        (device, precision, compiled, steps)
        for precision, compiled in (("fp32", False), ("bf16", False), ("bf16", True))
    ]
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for where, precision, compiled, count in ways:
            step, dev, chars = training_step(text, Path(tmp), size, where, precision, compiled)
            for _ in range(3):  # warm-up: cuDNN plans, autotuning, compilation
                step()
            rate = chars / seconds_per_call(step, dev, count, repeats)
            baseline = baseline or rate
            name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
            print(
                f"| {name} | {precision} | {'yes' if compiled else 'no'} | {rate:,.0f} | "
                f"x{rate / baseline:.1f} |",
                flush=True,
            )


def generation(
    text: str, size: dict, device: str, length: int, cpu_length: int, repeats: int
) -> None:
    print(f"\n## Generation: LSTM {size['hidden']} x {size['layers']}, temperature 1\n")
    print("| device | engine | streams | chars/s |")
    print("|---|---|---:|---:|")
    tokenizer = build_tokenizer("char", text)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        embed_dim=size["embed"],
        hidden_size=size["hidden"],
        num_layers=size["layers"],
    )
    cpu_model = build_model(config).eval()
    gpu_model = build_model(config).eval().to(device)
    gpu_model.load_state_dict(cpu_model.state_dict())
    dev = torch.device(device)
    for model, engine, n in ((cpu_model, "numpy", cpu_length), (gpu_model, "torch", length)):
        for streams in (1, 256):

            def run(m=model, e=engine, s=streams, k=n) -> None:
                generate(m, tokenizer, "ROMEO:", length=k, num_samples=s, engine=e)

            run()
            rate = (
                streams
                * n
                / seconds_per_call(
                    run, dev if engine == "torch" else torch.device("cpu"), 1, repeats
                )
            )
            name = (
                torch.cuda.get_device_name(dev)
                if model is gpu_model and dev.type == "cuda"
                else "CPU"
            )
            print(f"| {name} | {engine} | {streams} | {rate:,.0f} |", flush=True)


def time_to_quality(
    runs: list[str], device: str, data_dir: str, minutes: float, target: float, eval_every: int
) -> None:
    print(f"\n## Time to {target} nats/char on tinyshakespeare ({minutes} minutes each)\n")
    print("| run | reached at (s) | step | best val nats/char | chars/s |")
    print("|---|---:|---:|---:|---:|")
    for run in runs:
        preset, *flags = shlex.split(run)
        precision = "bf16" if device.startswith("cuda") else "fp32"
        with tempfile.TemporaryDirectory() as tmp:
            cmd = train_command(
                "tinyshakespeare", Path(tmp, "run"), data_dir, "--preset", preset,
                "--device", device, "--precision", precision, "--minutes", str(minutes),
                "--eval-every", str(eval_every), *flags,
            )  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| {run} | failed: {done.stderr.strip().splitlines()[-1:]} | | | |")
                continue
            records = eval_records(Path(tmp, "run"))
        reached = next((r for r in records if r["val_nats_per_char"] <= target), None)
        best = min(r["val_nats_per_char"] for r in records)
        speed = statistics.median(r["chars_per_s"] for r in records if r["chars_per_s"])
        at = f"{reached['elapsed']:.1f}" if reached else "not reached"
        step = reached["step"] if reached else "-"
        print(f"| {run} | {at} | {step} | {best:.4f} | {speed:,.0f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cpu-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--target", type=float, default=1.47)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--run", action="append", help="a preset and flags (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, any device")
    args = parser.parse_args()
    print(describe())
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (the GPU path needs an NVIDIA GPU)")
        return 0
    corpus = Path(args.data_dir, "tinyshakespeare.txt")
    if not corpus.is_file():
        raise SystemExit(f"no tinyshakespeare.txt in {args.data_dir}; pass --data-dir")
    text = corpus.read_text(encoding="utf-8")
    size = {"hidden": 1024, "layers": 3, "embed": 128, "batch": args.batch, "seq": 128}
    runs, minutes, length, cpu_length = args.run or DEFAULT_RUNS, args.minutes, 2000, 200
    if args.smoke:
        size = {"hidden": 64, "layers": 2, "embed": 16, "batch": 8, "seq": 32}
        runs, minutes, length, cpu_length = args.run or ["quick"], 0.1, 100, 50
        args.steps, args.cpu_steps, args.repeats = 2, 2, 1
    print(f"corpus: {corpus} ({len(text):,} chars)")
    throughput(text, size, args.device, args.steps, args.cpu_steps, args.repeats)
    generation(text, size, args.device, length, cpu_length, args.repeats)
    time_to_quality(runs, args.device, args.data_dir, minutes, args.target, args.eval_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
