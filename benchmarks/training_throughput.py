"""Training throughput and efficiency: chargen's training step against the machine's matmul peak.

In one run it measures (1) the fp32 matmul peak of this machine (the best of torch and NumPy
on square matrices, the hardware baseline), (2) a plain PyTorch loop (``nn.LSTM`` + linear head,
dropout 0.1, AdamW, clipping: the textbook recipe, a software baseline) and (3) chargen's own
``Trainer.train_step`` on the same shapes, for LSTM 128 / 512 / 1024 at the default preset's
batch 32 x 64 and at batch 128 x 64. It prints chars/s and the achieved GFLOP/s with

    FLOPs per char = 6 * (4H * (E + H) + H * V)

(the matmuls of the LSTM's input and recurrent projections and of the head: 2 FLOPs per
multiply-add forward, twice that backward; gate arithmetic and the optimizer are not counted,
so the fraction of peak is a lower bound). Medians of ``--repeats`` timings of ``--steps`` steps.

    python benchmarks/training_throughput.py [--steps 10] [--repeats 3] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from chargen import checkpoint as ckpt  # noqa: E402
from chargen.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from chargen.tokenizer import build_tokenizer  # noqa: E402
from chargen.training import Trainer  # noqa: E402

EMBED = 64
SHAPES = [(128, 32), (128, 128), (512, 32), (512, 128), (1024, 32), (1024, 128)]
SEQ_LEN = 64


def matmul_peak(repeats: int) -> tuple[float, str]:
    """Best fp32 GFLOP/s of an n x n matmul (n = 1024, 2048, 3072) in torch or NumPy."""
    best, where = 0.0, ""
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        an, bn = a.numpy(), b.numpy()
        for name, fn in (("torch", a.__matmul__), ("numpy", an.__matmul__)):
            operand = b if name == "torch" else bn
            fn = partial(fn, operand)
            fn()
            seconds = min(_time(fn, 1) for _ in range(repeats + 2))
            gflops = 2 * n**3 / seconds / 1e9
            if gflops > best:
                best, where = gflops, f"{name} {n}x{n}"
    return best, where


def _time(fn, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return time.perf_counter() - start


def flops_per_char(hidden: int, vocab: int) -> float:
    return 6.0 * (4 * hidden * (EMBED + hidden) + hidden * vocab)


def plain_loop(hidden: int, batch: int, vocab: int):
    """The textbook PyTorch recipe: one step of nn.LSTM + Linear, cross-entropy, AdamW, clipping."""
    torch.manual_seed(0)
    embed = torch.nn.Embedding(vocab, EMBED)
    lstm = torch.nn.LSTM(EMBED, hidden, batch_first=True)
    head = torch.nn.Linear(hidden, vocab)
    drop = torch.nn.Dropout(0.1)  # chargen's default preset drops out before and after the LSTM
    params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = torch.randint(0, vocab, (batch, SEQ_LEN))
    y = torch.randint(0, vocab, (batch, SEQ_LEN))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out, _ = lstm(drop(embed(x)))
        loss = F.cross_entropy(head(drop(out)).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def chargen_trainer(
    text: str,
    folder: Path,
    *,
    hidden: int,
    batch: int,
    seq_len: int = SEQ_LEN,
    embed: int = EMBED,
    layers: int = 1,
    **train: object,
) -> tuple:
    """chargen's Trainer on ``text`` (the medium preset's options at this shape, fp32 unless
    ``train`` says otherwise); returns (one ``train_step`` per call, the trainer)."""
    tokenizer = build_tokenizer("char", text)
    model = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        embed_dim=embed,
        hidden_size=hidden,
        num_layers=layers,
        dropout=0.1,
    )
    options: dict = {"lr": 5e-3, "device": "cpu", "precision": "fp32", **train}
    config = ckpt.RunConfig(
        model, TrainConfig(batch_size=batch, seq_len=seq_len, **options), DataConfig()
    )
    trainer = Trainer(folder, config, tokenizer, tokenizer.encode(text), "benchmark")
    counter = iter(range(10**9))

    def step() -> None:
        trainer.train_step(0, next(counter) % trainer.steps_per_epoch)

    return step, trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--corpus",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "nietzsche.txt"),
        help="text to train on (default ../shared/data/nietzsche.txt; a generated text if absent)",
    )
    args = parser.parse_args()
    print(describe())
    corpus = Path(args.corpus)
    if corpus.exists():
        text = corpus.read_text(encoding="latin-1")
        print(f"corpus: {corpus} ({len(text):,} chars)")
    else:
        rng = np.random.default_rng(0)
        text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz .,\n"), 600_000))
        print(f"corpus: {corpus} is absent; a random 600,000-char text over 30 symbols")
    peak, where = matmul_peak(args.repeats)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({where})\n")
    print(
        "| model | batch x seq | plain loop chars/s | chargen chars/s | chargen GFLOP/s "
        "| % of peak | chargen / plain |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="chargen-throughput-") as tmp:
        for hidden, batch in SHAPES:
            step, trainer = chargen_trainer(text, Path(tmp), hidden=hidden, batch=batch)
            vocab = trainer.tokenizer.vocab_size
            plain = plain_loop(hidden, batch, vocab)
            results = {}
            for name, fn in (("plain", plain), ("chargen", step)):
                fn()
                fn()  # warm-up
                seconds = statistics.median(
                    _time(fn, args.steps) / args.steps for _ in range(args.repeats)
                )
                results[name] = batch * SEQ_LEN / seconds
            gflops = results["chargen"] * flops_per_char(hidden, vocab) / 1e9
            print(
                f"| LSTM {hidden} | {batch} x {SEQ_LEN} | {results['plain']:,.0f} "
                f"| {results['chargen']:,.0f} | {gflops:.1f} | {100 * gflops / peak:.0f}% "
                f"| x{results['chargen'] / results['plain']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
