"""Quality per minute: train candidate configurations for fixed wall-clock budgets, one at a time.

Each candidate runs ``chargen train CORPUS --minutes M`` in a fresh process (so timings and peak
memory are its own) and reports its best validation loss in nats and bits per character, so
families and tokenizations compare fairly. Results are appended as JSON lines to ``--log``
and printed as a Markdown table beside the recorded baselines (nanoGPT's CPU recipe and the
seed program); the best candidate per corpus and budget is what the presets follow.

    python benchmarks/sweep.py --corpus tinyshakespeare --budgets 1 3 --candidates lstm gru transformer
    python benchmarks/sweep.py --corpus nietzsche --budgets 10 --candidates lstm-reg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, eval_records  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LN2 = 0.6931471805599453

# chargen train flags per candidate (the corpus, budget and output folder are added)
CANDIDATES: dict[str, list[str]] = {
    # the default preset: LSTM 512, embedding 64, dropout 0.1
    "lstm": ["--preset", "medium"],
    # more regularisation for longer budgets: dropout 0.25, weight decay 0.1, tied embedding
    "lstm-reg": ["--preset", "long"],
    "lstm-tied": [
        "--preset", "medium", "--embed-dim", "128", "--tie-weights", "--dropout", "0.2",
    ],
    "lstm-2x": ["--preset", "medium", "--layers", "2", "--hidden-size", "384", "--dropout", "0.2"],
    "gru": ["--preset", "medium", "--model", "gru"],
    # faster steps for short budgets
    "lstm-384": ["--preset", "medium", "--hidden-size", "384", "--embed-dim", "48", "--lr", "6e-3"],
    "gru-384": [
        "--preset", "medium", "--model", "gru", "--hidden-size", "384", "--embed-dim", "48",
        "--lr", "6e-3",
    ],
    "transformer": [
        "--model", "transformer", "--layers", "4", "--hidden-size", "192", "--embed-dim", "192",
        "--num-heads", "4", "--context-size", "128", "--seq-len", "128", "--batch-size", "16",
        "--lr", "2e-3", "--dropout", "0.1", "--tie-weights", "--warmup-steps", "100",
    ],
    # = --preset transformer
    "transformer-small": [
        "--model", "transformer", "--layers", "4", "--hidden-size", "128", "--embed-dim", "128",
        "--num-heads", "4", "--context-size", "64", "--seq-len", "64", "--batch-size", "32",
        "--lr", "3e-3", "--dropout", "0.0", "--tie-weights", "--warmup-steps", "100",
    ],
}  # fmt: skip

CORPORA = {"nietzsche": ["--encoding", "latin-1"], "tinyshakespeare": []}
BASELINES = {
    "tinyshakespeare": "nanoGPT CPU recipe (its README; measured here): 1.886 nats after 71 s",
    "nietzsche": "seed program (Keras, DLwP 8.1; measured here): 1.639 nats after ~176 s",
}


def run_candidate(name: str, corpus: str, minutes: float, data_dir: str) -> dict:
    """Train one candidate for ``minutes``; its best validation loss, steps and wall time."""
    out = tempfile.mkdtemp(prefix=f"chargen-sweep-{name}-")
    cmd = [
        sys.executable, "-m", "chargen", "train", corpus, "--data-dir", data_dir,
        *CORPORA[corpus], "--out", out, "--overwrite", *CANDIDATES[name],
        "--minutes", str(minutes), "--sample-length", "0", "--eval-every", "250",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"candidate": name, "error": proc.stderr.strip().splitlines()[-1:], "cmd": cmd}
    evals = eval_records(out)
    best = min(evals, key=lambda r: r["val_nats_per_char"])
    config = json.loads(Path(out, "config.json").read_text())
    return {
        "candidate": name,
        "corpus": corpus,
        "minutes": minutes,
        "family": config["model"]["family"],
        "model": config["model"],
        "best_nats_per_char": round(best["val_nats_per_char"], 4),
        "best_bits_per_char": round(best["val_nats_per_char"] / LN2, 4),
        "best_at_s": round(best["elapsed"], 1),
        "steps": evals[-1]["step"],
        "wall_s": round(wall, 1),
        "flags": CANDIDATES[name],
        "run": out,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), required=True)
    parser.add_argument("--budgets", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=["lstm"])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--log", default="benchmarks/results/sweep.jsonl")
    args = parser.parse_args()
    if not (Path(args.data_dir) / f"{args.corpus}.txt").exists():
        print(f"skipped: {args.data_dir}/{args.corpus}.txt is absent (pass --data-dir)")
        return 0
    print(describe())
    print(f"baseline: {BASELINES[args.corpus]}\n")
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    print("| corpus | budget | candidate | family | best nats/char | bits/char | steps |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for minutes in args.budgets:
        for name in args.candidates:
            result = run_candidate(name, args.corpus, minutes, args.data_dir)
            results.append(result)
            with open(args.log, "a", encoding="utf-8") as log:
                log.write(json.dumps(result) + "\n")
            if "error" in result:
                print(f"| {args.corpus} | {minutes:g} min | {name} | failed: {result['error']} |")
                continue
            print(
                f"| {args.corpus} | {minutes:g} min | {name} | {result['family']} | "
                f"{result['best_nats_per_char']:.4f} | {result['best_bits_per_char']:.4f} | "
                f"{result['steps']} |",
                flush=True,
            )
    for minutes in args.budgets:
        done = [r for r in results if r.get("minutes") == minutes and "error" not in r]
        if done:
            best = min(done, key=lambda r: r["best_nats_per_char"])
            print(
                f"best at {minutes:g} min on {args.corpus}: {best['candidate']} "
                f"({best['best_nats_per_char']:.4f} nats/char)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
