"""Generation speed, state carried: chargen's fused step against the ``nn.LSTM`` step.

For LSTM 128 and 512 (untrained weights, 59 symbols as in nietzsche), one stream and 256
streams, it times ``chargen.generate.generate`` (temperature 1) with its fused single-token
step and, as the baseline in the same run, the same function with each token going through
``model(ids, state)`` (PyTorch's LSTM kernel). Medians of ``--repeats`` runs.

    python benchmarks/generation_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

import chargen.generate as generate_module  # noqa: E402
from chargen.config import ModelConfig  # noqa: E402
from chargen.generate import generate  # noqa: E402
from chargen.models import build_model  # noqa: E402
from chargen.models.stepper import FusedStepper  # noqa: E402
from chargen.tokenizer import build_tokenizer  # noqa: E402


class KernelStepper:
    """The baseline: the same generation loop, each token through ``nn.LSTM`` (torch.lstm)."""

    def __init__(self, model) -> None:
        self.model = model

    def step(self, ids: torch.Tensor, state):
        logits, state = self.model(ids[:, None], state)
        return logits[:, -1], state


def run(model, tok, streams: int, length: int, stepper: type) -> None:
    saved = generate_module.FusedStepper
    generate_module.FusedStepper = stepper
    try:
        generate(model, tok, "(", length=length, num_samples=streams)
    finally:
        generate_module.FusedStepper = saved


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    tok = build_tokenizer("char", "".join(chr(40 + i) for i in range(59)))
    print("\n| model | streams | fused step chars/s | nn.LSTM step chars/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for hidden in (128, 512):
        torch.manual_seed(0)
        model = build_model(ModelConfig(vocab_size=59, embed_dim=64, hidden_size=hidden)).eval()
        for streams, length in ((1, 2000), (256, 200)):
            fast = timed(
                lambda m=model, s=streams, n=length: run(m, tok, s, n, FusedStepper), args.repeats
            )
            plain = timed(
                lambda m=model, s=streams, n=length: run(m, tok, s, n, KernelStepper), args.repeats
            )
            chars = streams * length
            print(
                f"| LSTM {hidden} | {streams} | {chars / fast:,.0f} | {chars / plain:,.0f} | x{plain / fast:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
