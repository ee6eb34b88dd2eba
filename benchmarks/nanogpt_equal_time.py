"""Quality at equal wall time against nanoGPT's CPU recipe on tinyshakespeare.

With ``--nanogpt PATH`` (a checkout of github.com/karpathy/nanoGPT; nothing of it is copied into
this repository) the benchmark runs the CPU command of nanoGPT's README in a temporary copy,
on the same ``tinyshakespeare.txt`` (its ``prepare.py`` logic, without the download: first 90%
train, last 10% validation, the split chargen uses too), times the whole process and reads its
last validation loss. Without it, the figure recorded on this machine class is used and the
output says so. Then chargen trains ``--preset`` (default ``minute``) in a process given the
same total wall time: its training budget is nanoGPT's wall time minus chargen's own start-up
(imports and reading the corpus, measured by a one-step run). chargen's loss is over the whole
validation split; nanoGPT's is its own estimate (``--eval_iters=20`` batches).

    python benchmarks/nanogpt_equal_time.py [--nanogpt /path/to/nanoGPT] [--preset minute]
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, run_training, train_command  # noqa: E402

HERE = Path(__file__).resolve().parent
RECORDED = {"seconds": 71.0, "val": 1.886}
NANOGPT_CPU_FLAGS = [  # its README's CPU command
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
    "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
    "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0",
]  # fmt: skip
VAL_LINE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def prepare_nanogpt_data(folder: Path, text: str) -> None:
    """What nanoGPT's data/shakespeare_char/prepare.py writes, from ``text`` (no download)."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(text)
    for name, part in (("train", text[: int(n * 0.9)]), ("val", text[int(n * 0.9) :])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(folder / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))


def run_nanogpt(checkout: Path, text: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="nanogpt-") as tmp:
        work = Path(tmp)
        for name in ("train.py", "model.py", "configurator.py"):
            shutil.copy(checkout / name, work / name)
        shutil.copytree(checkout / "config", work / "config")
        data = work / "data" / "shakespeare_char"
        data.mkdir(parents=True)
        prepare_nanogpt_data(data, text)
        cmd = [sys.executable, "train.py", *NANOGPT_CPU_FLAGS, f"--out_dir={work / 'out'}"]
        print(f"nanoGPT: (in a copy of {checkout}) {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nanoGPT failed:\n{proc.stderr[-2000:]}")
    found = VAL_LINE.findall(proc.stdout)
    if not found:
        raise SystemExit("nanoGPT printed no validation loss")
    step, _, val = found[-1]
    return {"seconds": wall, "val": float(val), "step": int(step)}


def run_chargen(data_dir: str, preset: str, budget: list[str]) -> dict:
    wall, evals = run_training("tinyshakespeare", data_dir, "--preset", preset, *budget)
    last = evals[-1]
    return {"wall": wall, "elapsed": last["elapsed"], "val": last["val_nats_per_char"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", help="path to a nanoGPT checkout (else: recorded figure)")
    parser.add_argument("--preset", default="minute")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("CHARGEN_DATA", str(HERE.parents[1] / "shared" / "data")),
    )
    args = parser.parse_args()
    corpus = Path(args.data_dir) / "tinyshakespeare.txt"
    if not corpus.exists():
        print(f"skipped: {corpus} is absent (pass --data-dir)")
        return 0
    print(describe())
    if args.nanogpt:
        nano = run_nanogpt(Path(args.nanogpt), corpus.read_text(encoding="utf-8"))
        origin = f"measured in this run ({nano['step']} iterations)"
    else:
        nano = dict(RECORDED)
        origin = "recorded on this machine class (pass --nanogpt PATH to measure it here)"
    print(
        f"nanoGPT CPU recipe ({origin}): val {nano['val']:.4f} nats/char, {nano['seconds']:.1f} s"
    )
    probe = run_chargen(args.data_dir, args.preset, ["--steps", "1"])
    startup = max(0.0, probe["wall"] - probe["elapsed"])
    budget = max(1.0, nano["seconds"] - startup)
    print(f"chargen start-up (one-step run): {startup:.1f} s; training budget {budget:.1f} s")
    mine = run_chargen(args.data_dir, args.preset, ["--minutes", f"{budget / 60:.6f}"])
    command = train_command("tinyshakespeare", "<tmp>", args.data_dir, "--preset", args.preset)
    print(f"chargen command: {' '.join(command)}")
    print("\n| program | process wall s | val nats/char |")
    print("|---|---:|---:|")
    print(f"| nanoGPT CPU recipe | {nano['seconds']:.1f} | {nano['val']:.4f} |")
    print(f"| chargen --preset {args.preset} | {mine['wall']:.1f} | {mine['val']:.4f} |")
    print(
        f"\nchargen is {nano['val'] - mine['val']:.3f} nats/char lower at equal wall time "
        f"(target <= 1.55: {'met' if mine['val'] <= 1.55 else 'not met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
