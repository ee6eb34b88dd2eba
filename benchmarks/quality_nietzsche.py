"""Quality bar of the core issue: validation loss after a fixed wall-clock budget on nietzsche.

Trains the default preset (or ``--preset``) for ``--minutes`` on ``nietzsche.txt`` (latin-1,
first 90% train / last 10% validation) in a child process, then prints the run's validation
curve, its final validation loss in nats and bits per char, its peak RSS, and the seed
program's figures measured on this machine class (1.795 nats after one epoch at ~100 s,
1.639 after two at ~176 s, 2.6 GB peak) beside it.

    python benchmarks/quality_nietzsche.py --minutes 3 [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, eval_records, peak_rss_mb, train_command  # noqa: E402

SEED_PROGRAM = {"epoch 1": (100, 1.795), "epoch 2": (176, 1.639), "peak_rss_mb": 2600}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--preset", default="medium")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(
            "CHARGEN_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
        ),
    )
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    parser.add_argument("extra", nargs="*", help="more flags for chargen train (after --)")
    args = parser.parse_args()
    if not (Path(args.data_dir) / "nietzsche.txt").exists():
        print(f"skipped: {args.data_dir}/nietzsche.txt is absent (pass --data-dir)")
        return 0
    out = args.out or tempfile.mkdtemp(prefix="chargen-quality-")
    flags = ["--preset", args.preset, "--minutes", str(args.minutes), *args.extra]
    cmd = train_command("nietzsche", out, args.data_dir, *flags)
    print(describe(cmd))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr)
        return proc.returncode
    evals = eval_records(out)
    print("\n  step   seconds  val nats/char  val bits/char")
    for e in evals:
        print(
            f"{e['step']:6d} {e['elapsed']:9.1f} {e['val_nats_per_char']:14.4f} {e['val_bits_per_char']:14.4f}"
        )
    best = min(e["val_nats_per_char"] for e in evals)
    first_below = next(
        (e for e in evals if e["val_nats_per_char"] <= SEED_PROGRAM["epoch 2"][1]), None
    )
    print(
        f"\nchargen --preset {args.preset}, {args.minutes:g} min: best validation {best:.4f} nats/char "
        f"({best / 0.6931471805599453:.4f} bits/char); wall {wall:.0f} s incl. start-up; "
        f"peak RSS {peak_rss_mb(children=True):.0f} MB"
    )
    print(
        f"seed program (recorded): {SEED_PROGRAM['epoch 1'][1]} nats after ~{SEED_PROGRAM['epoch 1'][0]} s, "
        f"{SEED_PROGRAM['epoch 2'][1]} after ~{SEED_PROGRAM['epoch 2'][0]} s, peak {SEED_PROGRAM['peak_rss_mb']} MB"
    )
    if first_below:
        print(
            f"chargen reached the seed's two-epoch loss ({SEED_PROGRAM['epoch 2'][1]}) at {first_below['elapsed']:.0f} s "
            f"(x{SEED_PROGRAM['epoch 2'][0] / first_below['elapsed']:.1f} sooner)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
