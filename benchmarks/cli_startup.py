"""Wall time of whole ``chargen`` processes: ``--help`` and ``generate RUN --length 400``.

Each command runs ``--repeats`` times in a fresh process (the median counts); the baseline in
the same run is the same generation through the torch engine (``--engine torch``: torch
imported, the model built and the chain run), which is what every generation cost before the
plain NumPy path (``chargen.lite``). Without ``--run`` a small LSTM run is trained first.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/cli_startup.py --run RUN
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def timed(command: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``command`` (each must succeed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="an LSTM/GRU run folder (default: train a small one)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(describe(), flush=True)
    chargen = [sys.executable, "-m", "chargen"]
    run = args.run
    if run is None:
        folder = Path(tempfile.mkdtemp(prefix="chargen-startup-"))
        corpus = folder / "corpus.txt"
        corpus.write_text(Path(__file__).read_text() * 20, encoding="utf-8")
        run = str(folder / "run")
        subprocess.run(
            [*chargen, "train", str(corpus), "--out", run, "--preset", "quick", "--steps", "50"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    generate = [*chargen, "generate", run, "--length", "400", "--seed", "1"]
    rows = [
        ("chargen --help", [*chargen, "--help"]),
        ("chargen generate RUN --length 400", generate),
        ("  the same, --engine torch (baseline)", [*generate, "--engine", "torch"]),
    ]
    print(f"median of {args.repeats} fresh processes, wall seconds (all runs)")
    for name, command in rows:
        times = timed(command, args.repeats)
        shown = " ".join(f"{t:.2f}" for t in times)
        print(f"{name:<40} {statistics.median(times):6.2f} s   ({shown})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
