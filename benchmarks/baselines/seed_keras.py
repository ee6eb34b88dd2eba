"""The seed program (Deep Learning with Python, 8.1) in Keras 3, as a measured baseline.

Faithful to the program in ``../shared/spec/seed-chapter-8-1-ko.md``: the text lower-cased,
windows of ``maxlen = 60`` characters every ``step = 3``, one-hot ``bool`` arrays, ``LSTM(128)``
then ``Dense(V, softmax)``, ``RMSprop(learning_rate=0.01)``, categorical cross-entropy, batch 128,
and generation by re-running the whole 60-character window through ``model.predict`` for every
new character, drawn with the book's ``sample(preds, temperature)``. Two changes make it a
benchmark: windows of the first 90% of the text train and windows of the last 10% give the
validation loss (nats per char = the mean cross-entropy of the character after each window),
and the book's temperature list ``[0.2, 0.5, 1.0, 1,2]`` (a typo) is read as
``[0.2, 0.5, 1.0, 1.2]``. Prints per epoch its wall time and losses, then generation chars/s
and peak RSS, and a one-line JSON summary (also written to ``--json-out``).

    python benchmarks/baselines/seed_keras.py [--epochs 2] [--gen-chars 100] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

MAXLEN, STEP = 60, 3
TEMPERATURES = (0.2, 0.5, 1.0, 1.2)


def describe(argv: list[str]) -> str:
    import keras
    import tensorflow as tf

    cpu = platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "\n".join(
        [
            f"machine: {cpu}, {os.cpu_count()} cores",
            f"versions: Python {platform.python_version()}, tensorflow {tf.__version__}, "
            f"keras {keras.__version__}, numpy {np.__version__}",
            f"command: {' '.join([sys.executable, *argv])}",
        ]
    )


def vectorize(text: str, char_indices: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The book's one-hot windows: x (N, 60, V) bool, y (N, V) bool."""
    sentences = [text[i : i + MAXLEN] for i in range(0, len(text) - MAXLEN, STEP)]
    next_chars = [text[i + MAXLEN] for i in range(0, len(text) - MAXLEN, STEP)]
    x = np.zeros((len(sentences), MAXLEN, len(char_indices)), dtype=bool)
    y = np.zeros((len(sentences), len(char_indices)), dtype=bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1
    return x, y


def sample(preds: np.ndarray, temperature: float = 1.0) -> int:
    """The book's draw: reweight log p / T, renormalise, one multinomial draw."""
    preds = np.asarray(preds).astype("float64")
    preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return int(np.argmax(probas))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--gen-chars", type=int, default=100, help="per temperature")
    parser.add_argument("--max-chars", type=int, help="use only the first N chars (smoke tests)")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(
            "CHARGEN_DATA", str(Path(__file__).resolve().parents[3] / "shared" / "data")
        ),
    )
    parser.add_argument("--json-out")
    args = parser.parse_args()
    path = Path(args.data_dir) / "nietzsche.txt"
    if not path.exists():
        print(f"skipped: {path} is absent (pass --data-dir)")
        return 0
    import keras
    from keras import layers

    print(describe(sys.argv), flush=True)
    random.seed(42)
    np.random.seed(42)
    keras.utils.set_random_seed(42)
    text = path.read_text(encoding="latin-1").lower()
    if args.max_chars:
        text = text[: args.max_chars]
    chars = sorted(set(text))
    char_indices = {c: i for i, c in enumerate(chars)}
    cut = int(len(text) * 0.9)
    start = time.perf_counter()
    x, y = vectorize(text[:cut], char_indices)
    x_val, y_val = vectorize(text[cut:], char_indices)
    print(
        f"text {len(text):,} chars, {len(chars)} symbols; windows: {len(x):,} train, "
        f"{len(x_val):,} validation; vectorised in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    model = keras.models.Sequential(
        [keras.Input((MAXLEN, len(chars))), layers.LSTM(128), layers.Dense(len(chars), "softmax")]
    )
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.RMSprop(0.01))
    epoch_seconds, val_losses, train_losses = [], [], []
    total = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=128, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        total += seconds
        val = float(model.evaluate(x_val, y_val, batch_size=512, verbose=0))
        epoch_seconds.append(round(seconds, 2))
        val_losses.append(val)
        train_losses.append(float(history.history["loss"][-1]))
        print(
            f"epoch {epoch}: {seconds:.1f} s (total {total:.1f} s), train {train_losses[-1]:.4f}, "
            f"val {val:.4f} nats/char ({val / math.log(2):.4f} bits/char)",
            flush=True,
        )
    start_index = random.randint(0, len(text) - MAXLEN - 1)
    made = 0
    start = time.perf_counter()
    for temperature in TEMPERATURES:
        generated = text[start_index : start_index + MAXLEN]
        for _ in range(args.gen_chars):
            sampled = np.zeros((1, MAXLEN, len(chars)))
            for t, char in enumerate(generated):
                sampled[0, t, char_indices[char]] = 1.0
            preds = model.predict(sampled, verbose=0)[0]
            generated = generated[1:] + chars[sample(preds, temperature)]
            made += 1
    gen_rate = made / (time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generation: {gen_rate:.1f} chars/s ({made} chars, model.predict per char)")
    print(f"peak RSS: {peak:.0f} MB")
    summary = {
        "epoch_seconds": epoch_seconds,
        "train_loss": train_losses,
        "val_nats_per_char": val_losses,
        "gen_chars_per_s": round(gen_rate, 2),
        "peak_rss_mb": round(peak),
    }
    print(json.dumps(summary))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
