"""One run's validation loss under three protocols, side by side (nats and bits per character).

A headline comparison quotes each side under its own protocol; this script puts chargen's
model under the baselines' protocols too, on the same validation split (the last 10% of the
text, read as the run was trained):

- **chargen**: every position of the split a target, the state carried from the split's start
  (``evaluate_streams``, what ``chargen eval`` and training report);
- **seed program** (the book's, ``baselines/seed_keras.py``): windows of 60 characters every 3rd
  position, each from a zero state, loss on the character after the window
  (``evaluate_windows``);
- **nanoGPT** (``estimate_loss``): random blocks of 64 characters, each from a zero state, the
  mean over all 64 positions of each block; nanoGPT averages 20 batches of 12 blocks (240
  blocks), here ``--blocks`` (default 2,400) at a fixed seed, and the 240-block figure too.

Every loss is computed in float32 on the CPU, whatever precision the run trained in (its
``train.precision`` is printed).

    python benchmarks/protocols.py RUN_DIR [--blocks 2400] [--weights best|last]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from chargen.checkpoint import load_run  # noqa: E402
from chargen.data import load_ids, split_ids  # noqa: E402
from chargen.evaluate import evaluate_streams, evaluate_windows, token_char_lengths  # noqa: E402

LN2 = math.log(2)


@torch.inference_mode()
def random_blocks(
    model: torch.nn.Module, ids: np.ndarray, lengths: np.ndarray, block: int, blocks: int, seed: int
) -> float:
    """nanoGPT's ``estimate_loss`` on ``blocks`` random blocks: nats per character."""
    model.eval()
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - block - 1, size=blocks)
    total, chars = 0.0, 0
    for b in range(0, blocks, 256):
        idx = starts[b : b + 256, None] + np.arange(block + 1)[None, :]
        chunk = torch.from_numpy(ids[idx].astype(np.int64))
        logits, _ = model(chunk[:, :-1])
        targets = chunk[:, 1:]
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum"
            )
        )
        chars += int(lengths[targets.numpy()].sum())
    return total / chars


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--blocks", type=int, default=2400)
    parser.add_argument("--weights", choices=["best", "last"], default="best")
    args = parser.parse_args()
    print(describe())
    config, tokenizer, model = load_run(args.run_dir, args.weights)
    ids = load_ids(config.data, tokenizer, unknown="drop").ids  # the run's text, as it read it
    _, val = split_ids(ids, config.train.val_fraction)
    lengths = token_char_lengths(tokenizer.vocab)
    m = config.model
    print(
        f"run: {args.run_dir} ({m.family} {m.num_layers} x {m.hidden_size}, trained in "
        f"{config.train.precision}; evaluated in float32), validation split {len(val):,} tokens"
    )
    rows = [
        (
            "chargen's own (whole split, state carried)",
            evaluate_streams(model, val, lengths, max_tokens=len(val)).nats_per_char,
        ),
        (
            "the seed program's (60-char windows every 3rd, zero state)",
            evaluate_windows(
                model, val, lengths, maxlen=60, step=3, max_tokens=len(val)
            ).nats_per_char,
        ),
        (
            f"nanoGPT's (random 64-char blocks, all positions, {args.blocks:,} blocks)",
            random_blocks(model, val, lengths, 64, args.blocks, seed=1337),
        ),
        (
            "nanoGPT's with its own count (240 blocks = 20 x 12)",
            random_blocks(model, val, lengths, 64, 240, seed=1337),
        ),
    ]
    print("\n| protocol | val nats/char | val bits/char |\n|---|---:|---:|")
    for name, nats in rows:
        print(f"| {name} | {nats:.4f} | {nats / LN2:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
