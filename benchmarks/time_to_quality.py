"""Time to the seed program's quality on nietzsche: how much sooner chargen gets there.

The target is the seed program's validation loss after its two epochs (nats/char, last 10% of
nietzsche.txt). With ``--seed-python`` (a Python with ``benchmarks/baselines/requirements.txt``
installed) the Keras seed program runs first, in this same run, and sets both the target and
the time to beat; otherwise the figures recorded on this machine class are used, and the output
says so. Then chargen trains ``--preset`` (default ``quick``) for each budget in ``--seconds``,
each in a fresh process, and reports the validation loss at the end of each budget: the first
budget whose loss is at or below the target is chargen's time to quality. Times are training
wall time (evaluations and checkpoints included); the wall time of the whole process
(Python start, imports, reading the corpus) is printed beside it. The seed program lower-cases
the text; chargen reads it as written (the shared nietzsche.txt is already lower-case, so both
see the same 59 symbols).

    python benchmarks/time_to_quality.py [--seconds 6 9 12 17.6] [--seed-python /tmp/seed-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, run_training, train_command  # noqa: E402

HERE = Path(__file__).resolve().parent
RECORDED_SEED = {"seconds": 176.0, "val_nats_per_char": 1.639}


def run_seed(python: str, data_dir: str) -> dict:
    """The Keras seed program, two epochs; its epoch times and validation losses."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp, "seed.json")
        cmd = [
            python,
            str(HERE / "baselines" / "seed_keras.py"),
            "--epochs",
            "2",
            "--gen-chars",
            "100",
            "--data-dir",
            data_dir,
            "--json-out",
            str(summary),
        ]
        print(f"seed program: {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not summary.exists():
            raise SystemExit(
                f"the seed program failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        data = json.loads(summary.read_text())
    print(
        "seed program: epoch seconds {}, validation nats/char {}, generation {} chars/s, "
        "peak RSS {} MB".format(
            data["epoch_seconds"],
            [round(v, 4) for v in data["val_nats_per_char"]],
            data["gen_chars_per_s"],
            data["peak_rss_mb"],
        )
    )
    return {
        "seconds": sum(data["epoch_seconds"][:2]),
        "val_nats_per_char": data["val_nats_per_char"][1],
        "peak_rss_mb": data.get("peak_rss_mb"),
    }


def run_chargen(seconds: float, preset: str, data_dir: str, extra: list[str]) -> dict:
    """chargen train for ``seconds`` of training; the last evaluation and the process wall time."""
    flags = ["--preset", preset, "--minutes", f"{seconds / 60:.6f}", *extra]
    wall, evals = run_training("nietzsche", data_dir, *flags)
    last = evals[-1]
    return {
        "budget": seconds,
        "elapsed": last["elapsed"],
        "val": last["val_nats_per_char"],
        "wall": wall,
        "step": last["step"],
        "command": " ".join(train_command("nietzsche", "<tmp>", data_dir, *flags)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[6.0, 9.0, 12.0, 17.6])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed-python", help="a Python with the seed baseline's requirements")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("CHARGEN_DATA", str(HERE.parents[1] / "shared" / "data")),
    )
    parser.add_argument("extra", nargs="*", help="more flags for chargen train (after --)")
    args = parser.parse_args()
    if not (Path(args.data_dir) / "nietzsche.txt").exists():
        print(f"skipped: {args.data_dir}/nietzsche.txt is absent (pass --data-dir)")
        return 0
    print(describe())
    if args.seed_python:
        seed = run_seed(args.seed_python, args.data_dir)
        origin = "measured in this run"
    else:
        seed = dict(RECORDED_SEED)
        origin = "recorded on this machine class (pass --seed-python to measure it here)"
    target = seed["val_nats_per_char"]
    print(
        f"seed program ({origin}): {target:.4f} nats/char after two epochs, {seed['seconds']:.0f} s\n"
    )
    print("| chargen budget | training s | process wall s | steps | val nats/char | reached |")
    print("|---:|---:|---:|---:|---:|---|")
    first = None
    for seconds in sorted(args.seconds):
        row = run_chargen(seconds, args.preset, args.data_dir, args.extra)
        reached = row["val"] <= target
        if reached and first is None:
            first = row
        print(
            f"| {seconds:g} s | {row['elapsed']:.1f} | {row['wall']:.1f} | {row['step']} "
            f"| {row['val']:.4f} | {'yes' if reached else 'no'} |",
            flush=True,
        )
    print(f"\nchargen command: {row['command']}")
    if first is None:
        print(f"chargen did not reach {target:.4f} within {max(args.seconds):g} s")
        return 0
    print(
        f"chargen --preset {args.preset} reached the seed's {target:.4f} nats/char after "
        f"{first['elapsed']:.1f} s of training ({first['wall']:.1f} s for the whole process): "
        f"x{seed['seconds'] / first['elapsed']:.1f} sooner "
        f"(x{seed['seconds'] / first['wall']:.1f} counting start-up)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
