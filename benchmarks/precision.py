"""bf16 autocast against fp32 on this CPU: steps and validation loss at equal wall time.

For each case, ``chargen train nietzsche`` runs for the same wall time with ``--precision fp32``
(the baseline) and ``--precision bf16``, alternating, each in a fresh process; the table gives
the steps taken and the validation loss at the end (evaluated in fp32 on the fp32 master
weights either way). ``--precision auto``, chargen's default, chooses bf16 where the CPU has
AVX-512 BF16 or AMX (printed first).

    python benchmarks/precision.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, run_training  # noqa: E402

from chargen.training import resolve_precision  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = [  # (name, flags, seconds)
    ("quick (LSTM 192)", ["--preset", "quick"], 15),
    ("medium (LSTM 512, default)", ["--preset", "medium"], 60),
    ("GRU 512", ["--preset", "medium", "--model", "gru"], 20),
    ("transformer", ["--preset", "transformer"], 20),
]


def run(flags: list[str], seconds: float, precision: str, data_dir: str) -> tuple[int, float]:
    """(steps, final validation nats/char) of one run."""
    budget = ["--minutes", str(seconds / 60), "--eval-every", "100000", "--precision", precision]
    _, evals = run_training("nietzsche", data_dir, *budget, *flags)
    return evals[-1]["step"], evals[-1]["val_nats_per_char"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=str(SHARED))
    args = parser.parse_args()
    if not Path(args.data_dir, "nietzsche.txt").is_file():
        raise SystemExit(f"no nietzsche.txt in {args.data_dir}; pass --data-dir")
    print(describe())
    auto = resolve_precision("auto", torch.device("cpu"))
    print(f"--precision auto on this CPU: {auto}")
    print(
        "\n| case | seconds | fp32 steps | bf16 steps | steps x | fp32 val nats/char "
        "| bf16 val nats/char |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, flags, seconds in CASES:
        found: dict[str, list[tuple[int, float]]] = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                found[precision].append(run(flags, seconds, precision, args.data_dir))
        steps = {p: statistics.median(s for s, _ in found[p]) for p in found}
        loss = {p: statistics.median(v for _, v in found[p]) for p in found}
        print(
            f"| {name} | {seconds} | {steps['fp32']:,.0f} | {steps['bf16']:,.0f} | "
            f"x{steps['bf16'] / steps['fp32']:.2f} | {loss['fp32']:.4f} | {loss['bf16']:.4f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
