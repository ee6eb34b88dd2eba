"""Generation speed, state carried: chargen's NumPy fast path against its torch paths.

For LSTM 128 and 512 (untrained weights, 59 symbols as in nietzsche), one stream and 256
streams, it times ``chargen.generate.generate`` (temperature 1) three ways in the same run:
the default engine (``numpy``: the fused step and the draw in NumPy), the ``torch`` engine
with its fused single-token step, and the ``torch`` engine with each token through
``model(ids, state)`` (PyTorch's LSTM kernel), the baseline. It checks that all three draw the
same tokens. Medians of ``--repeats`` runs.

``--chains`` times one stream of LSTM 128 with sampling chains of growing length, on the
default engine: temperature alone is the baseline of the same run; every rule has a NumPy
version (``chargen/numpy_rules.py``), so each chain is drawn without a torch processor (the
bar for a full chain is 5,000 chars/s). It checks that the ``torch`` engine draws the same
tokens for each chain.

``--cli`` (also run by ``--chains``) times whole ``chargen generate`` processes on a saved LSTM 128 run writing 20,000
characters to a file, plain (temperature alone: the torch-free NumPy path) and with the full
chain; the rate leaves out each path's start-up, measured as ``--length 1`` in the same run.

``--clock cpu`` times by the process's CPU time instead of the wall clock: on a machine whose
core is shared with other work, it leaves out the time the others ran.

    python benchmarks/generation_speed.py [--repeats 3] [--chains | --cli] [--clock wall|cpu]
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
from chargen.generate import Sample, generate  # noqa: E402
from chargen.models import ForwardStepper, build_model, build_stepper  # noqa: E402
from chargen.sampling import SamplingConfig  # noqa: E402
from chargen.tokenizer import build_tokenizer  # noqa: E402

WAYS = {  # name: (engine, single-token step of the torch engine)
    "numpy": ("numpy", build_stepper),
    "torch fused": ("torch", build_stepper),
    "torch nn.LSTM": ("torch", ForwardStepper),
}


def run(model, tok, streams: int, length: int, way: str) -> list[list[int]]:
    engine, stepper = WAYS[way]
    saved = generate_module.build_stepper
    generate_module.build_stepper = stepper
    try:
        out = generate(model, tok, "(", length=length, num_samples=streams, engine=engine)
    finally:
        generate_module.build_stepper = saved
    return [s.tokens for s in out]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


CHAINS = {  # name: the sampling rules, one stream of LSTM 128
    "temperature 0.8 (baseline)": {"temperature": 0.8},
    "top-k 40": {"top_k": 40},
    "top-p 0.9": {"top_p": 0.9},
    "penalties + top-p": {"repetition_penalty": 1.2, "frequency_penalty": 0.1, "top_p": 0.9},
    "penalties, DRY, top-p, regex": {
        "repetition_penalty": 1.2,
        "dry_multiplier": 0.8,
        "top_p": 0.9,
        "regex": "[^\\n]*",
    },
}


def chains(tok, repeats: int, clock=time.perf_counter, length: int = 2000) -> None:
    """One stream of LSTM 128 through each chain of ``CHAINS``, default engine."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=59, embed_dim=64, hidden_size=128)).eval()
    print(
        "\n| LSTM 128, 1 stream | chars/s | / baseline | same tokens as torch |"
        "\n|---|---:|---:|---|"
    )
    base = None
    for name, rules in CHAINS.items():
        cfg = SamplingConfig(**rules)

        def once(c: SamplingConfig = cfg, engine: str = "numpy") -> list[Sample]:
            return generate(model, tok, "(", length=length, sampling=c, seed=1, engine=engine)

        same = once()[0].tokens == once(engine="torch")[0].tokens
        speed = length / timed(once, repeats, clock)
        base = base or speed
        print(f"| {name} | {speed:,.0f} | x{speed / base:.2f} | {'yes' if same else 'NO'} |")


CLI_RULES = {  # name: generate's flags besides the run, length and seed
    "temperature 0.8 (plain path)": ["--temperature", "0.8"],
    "penalties, DRY, top-p, regex": [
        *("--repetition-penalty", "1.2", "--dry-multiplier", "0.8"),
        *("--top-p", "0.9", "--regex", "[^\\n]*"),
    ],
}


def cli(repeats: int, length: int = 20_000) -> None:
    """Whole ``chargen generate`` processes writing to a file (wall clock)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("".join(chr(40 + i) for i in range(59)) * 40, encoding="utf-8")
        run_dir = Path(tmp) / "run"
        train = [sys.executable, "-m", "chargen", "train", str(corpus), "--out", str(run_dir)]
        sizes = ["--preset", "quick", "--hidden-size", "128", "--embed-dim", "64", "--steps", "1"]
        subprocess.run([*train, *sizes], check=True, capture_output=True)
        out = Path(tmp) / "out.txt"

        def once(n: int, rules: list[str]) -> float:
            command = [sys.executable, "-m", "chargen", "generate", str(run_dir), "--seed", "1"]
            start = time.perf_counter()
            with out.open("w") as sink:
                subprocess.run([*command, "--length", str(n), *rules], check=True, stdout=sink)
            return time.perf_counter() - start

        print(
            f"\n| LSTM 128 run, `chargen generate --length {length} > file` | whole process s "
            "| start-up s (`--length 1`) | chars/s after start-up |\n|---|---:|---:|---:|"
        )
        for name, rules in CLI_RULES.items():
            whole = statistics.median(once(length, rules) for _ in range(repeats))
            start = statistics.median(once(1, rules) for _ in range(repeats))
            rate = (length - 1) / (whole - start)
            print(f"| {name} | {whole:.2f} | {start:.2f} | {rate:,.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chains", action="store_true", help="time sampling chains instead")
    parser.add_argument("--cli", action="store_true", help="time whole command-line processes")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="what to time by")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    print(describe())
    tok = build_tokenizer("char", "".join(chr(40 + i) for i in range(59)))
    if args.chains:  # the API and the command line, in one run
        chains(tok, args.repeats, clock)
        cli(args.repeats)
        return 0
    if args.cli:
        cli(args.repeats)
        return 0
    names = list(WAYS)
    print(
        "\n| model | streams | "
        + " | ".join(f"{n} chars/s" for n in names)
        + " | numpy / nn.LSTM | same tokens |"
    )
    print("|---|---:|" + "---:|" * len(names) + "---:|---|")
    for hidden in (128, 512):
        torch.manual_seed(0)
        model = build_model(ModelConfig(vocab_size=59, embed_dim=64, hidden_size=hidden)).eval()
        for streams, length in ((1, 2000), (256, 200)):
            speeds, tokens = {}, {}
            for name in names:
                tokens[name] = run(model, tok, streams, length, name)
                seconds = timed(
                    lambda m=model, s=streams, n=length, w=name: run(m, tok, s, n, w),
                    args.repeats,
                    clock,
                )
                speeds[name] = streams * length / seconds
            same = all(tokens[n] == tokens[names[0]] for n in names)
            print(
                f"| LSTM {hidden} | {streams} | "
                + " | ".join(f"{speeds[n]:,.0f}" for n in names)
                + f" | x{speeds['numpy'] / speeds['torch nn.LSTM']:.1f} | {'yes' if same else 'NO'} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
