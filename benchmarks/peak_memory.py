"""Peak resident memory while training on nietzsche: chargen now against its former training path.

Each preset trains for ``--steps`` steps (evaluations, checkpoints and the end-of-run samples
included) in a fresh process, alternating two configurations ``--repeats`` times:

* ``chargen``: ``chargen train nietzsche --preset P`` as shipped;
* ``baseline``: the same command with the training path chargen had before: ``torch.optim``
  optimizers (whose first use imports torch._dynamo and sympy), whole batches through
  oneDNN's LSTM (no row slices, so its workspace grows as batch x seq_len x hidden) and fp32
  (the default before ``--precision auto``).

The peak is the child's ``ru_maxrss`` from ``wait4`` (what ``/usr/bin/time -f %M`` reports), in
MiB; the training speed is the last evaluation record's chars/s. Reports medians.

    python benchmarks/peak_memory.py [--presets quick minute medium long] [--steps 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, eval_records  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# The former training path, patched into chargen's trainer in the child process.
BASELINE = """
import importlib, sys, torch
trainer = importlib.import_module("chargen.training.trainer")
step = importlib.import_module("chargen.training.step")

def make_optimizer(model, config):
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=config.lr, alpha=0.9, eps=1e-7)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))

trainer.make_optimizer = make_optimizer
step.row_chunks = lambda *args: 1
from chargen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def peak_of(cmd: list[str]) -> float:
    """Run ``cmd`` to the end; its peak RSS in MiB (``wait4``'s ru_maxrss)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "minute", "medium", "long"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(SHARED))
    args = parser.parse_args()
    if not Path(args.data_dir, "nietzsche.txt").is_file():
        raise SystemExit(f"no nietzsche.txt in {args.data_dir}; pass --data-dir")
    print(describe())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            flags = [
                "train",
                "nietzsche",
                "--data-dir",
                args.data_dir,
                "--encoding",
                "latin-1",
                "--preset",
                preset,
                "--steps",
                str(args.steps),
                "--eval-every",
                str(max(1, args.steps // 3)),
                "--out",
                str(Path(tmp, "run")),
                "--overwrite",
            ]
            found: dict[str, tuple[list[float], list[float]]] = {
                "chargen": ([], []),
                "baseline": ([], []),
            }
            for _ in range(args.repeats):
                for name, head in (
                    ("chargen", [sys.executable, "-m", "chargen"]),
                    ("baseline", [sys.executable, "-c", BASELINE]),
                ):
                    peaks, speeds = found[name]
                    extra = ["--precision", "fp32"] if name == "baseline" else []
                    peaks.append(peak_of([*head, *flags, *extra]))
                    speeds.append(eval_records(Path(tmp, "run"))[-1]["chars_per_s"])
            ours, base = found["chargen"], found["baseline"]
            rows.append(
                (
                    preset,
                    statistics.median(ours[0]),
                    min(ours[0]),
                    max(ours[0]),
                    statistics.median(base[0]),
                    statistics.median(ours[1]),
                    statistics.median(base[1]),
                )
            )
            print(f"{preset}: chargen {ours}, baseline {base}", flush=True)
    print(
        "\n| preset | chargen peak MiB (median, range) | baseline peak MiB | saved "
        "| chargen chars/s | baseline chars/s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for preset, peak, low, high, base, speed, base_speed in rows:
        print(
            f"| {preset} | {peak:,.0f} ({low:,.0f}-{high:,.0f}) | {base:,.0f} | "
            f"{base - peak:,.0f} | {speed:,.0f} | {base_speed:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
