"""``--preset auto``: a model and training settings sized to the corpus, the budget and the machine.

The rule is a table measured by ``benchmarks/sweep.py`` (``benchmarks/RESULTS.md#auto``): a row
per training-corpus size, a column per budget in *reference minutes*, and in each cell the
candidate with the lowest validation loss there. A budget on this machine becomes reference
minutes through a probe that times a fixed reference model (an LSTM 256 step on 32 x 64 tokens)
here, against the same probe on the sweep's machine::

    reference minutes = minutes x probe chars/s here / REFERENCE_CHARS_PER_S

(a ``--steps`` or ``--epochs`` budget is its number of tokens / REFERENCE_CHARS_PER_S / 60).
The cell nearest in log size and log budget names the candidate; the flags a user gave win over
the candidate's, and the run stops once no new best came for ``PATIENCE_SHARE`` of the budget.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from chargen.config import ModelConfig, Preset, TrainConfig, get_preset
from chargen.models import build_model
from chargen.optimizers import AdamW

# chars/s of the probe on the sweep's machine (AMD EPYC, one core, torch threads 1)
REFERENCE_CHARS_PER_S = 42_000.0
PATIENCE_SHARE = 0.3  # stop once no new best came for this share of the budget
EVALUATIONS = 40  # at least this many evaluations over a budget, so the best is caught in time
MIN_EVAL_EVERY = 10  # steps: more often, evaluation would cost more than it tells
EVAL_SHARE = 0.08  # at most about this share of the budget spent on evaluation
EVAL_MAX_TOKENS = 200_000  # a validation estimate within ~0.5 % needs no more
DEFAULT_MINUTES = 3.0
RESULTS = "benchmarks/RESULTS.md#auto"

# candidate -> (named preset, fields changed from it); benchmarks/sweep.py runs the same set
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": ("quick", {}),
    "minute": ("minute", {}),
    "small": ("small", {}),
    "medium": ("medium", {}),
    "long": ("long", {}),
    "transformer": ("transformer", {}),
    "gru": ("medium", {"family": "gru"}),
    "lstm128-d2": ("quick", {"hidden_size": 128, "dropout": 0.2}),
    "lstm256-d3": ("small", {"dropout": 0.3, "weight_decay": 0.1}),
    "lstm384-d2": ("minute", {"dropout": 0.2}),
}

# the measured rule: training tokens -> (budget in reference minutes, the best candidate there).
# 10K and 100K: this sweep's cells (one core, so its minutes are reference minutes). 1M and 10M:
# the earlier family sweep on 1.1M characters with 2 threads, whose minutes are 1.9 reference
# minutes each (the probe runs 76-82K chars/s there against 42K): `minute` near one minute,
# `medium` at 3, `long` at 10 (benchmarks/RESULTS.md#auto).
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
TWO_THREADS = 1.9  # reference minutes in a minute of the earlier sweep's 2 threads
TABLE: dict[int, tuple[tuple[float, str], ...]] = {
    10_000: ((0.5, "lstm128-d2"), (1.0, "lstm128-d2"), (3.0, "lstm128-d2")),
    100_000: ((0.5, "lstm128-d2"), (1.0, "lstm128-d2"), (3.0, "lstm128-d2")),
    1_000_000: (  # one-core cells at their probe's reference minutes, then the 2-thread sweep
        (0.75, "quick"),  # 0.5 min at 62,948 probe chars/s
        (1.0, "minute"),
        (4.0, "minute"),  # 3 min at 55,963 probe chars/s
        (3 * TWO_THREADS, "medium"),
        (10 * TWO_THREADS, "long"),
    ),
    10_000_000: (  # one-core cells at their probe's reference minutes, then the 2-thread sweep
        (0.61, "quick"),  # 0.5 min at 50,916 probe chars/s
        (1.25, "minute"),  # 1 min at 52,294 probe chars/s
        (3.7, "minute"),  # 3 min at about 52,000 probe chars/s (quick within 0.1%)
        (3 * TWO_THREADS, "medium"),
        (10 * TWO_THREADS, "long"),
    ),
}


@dataclass(frozen=True)
class Choice:
    """What ``auto`` chose for a run, and the numbers it chose from."""

    candidate: str
    train_tokens: int
    reference_minutes: float
    probe_chars_per_s: float
    line: str  # the run header's one line

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def nearest(values: tuple[float, ...], x: float) -> int:
    """Index of the value nearest to ``x`` in log scale (``values`` ascending and positive)."""
    i = bisect.bisect_left(values, x)
    if i == 0:
        return 0
    if i == len(values):
        return len(values) - 1
    low, high = values[i - 1], values[i]
    return i - 1 if math.log(x / low) <= math.log(high / x) else i


def pick(train_tokens: int, reference_minutes: float) -> str:
    """The table's candidate for a corpus of ``train_tokens`` and a budget in reference minutes."""
    row = TABLE[SIZES[nearest(SIZES, max(train_tokens, 1))]]
    budgets = tuple(minutes for minutes, _ in row)
    return row[nearest(budgets, max(reference_minutes, 1e-6))][1]


def candidate_preset(name: str) -> Preset:
    """Candidate ``name`` as a preset: its named preset with its fields changed."""
    base, changes = CANDIDATES[name]
    preset = get_preset(base)
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return Preset(
        name,
        preset.description,
        dataclasses.replace(
            preset.model, **{k: v for k, v in changes.items() if k in model_fields}
        ),
        dataclasses.replace(
            preset.train, **{k: v for k, v in changes.items() if k not in model_fields}
        ),
    )


def probe_chars_per_s(device: torch.device, seconds: float = 0.4) -> float:
    """Training chars/s of the reference model (LSTM 256, batch 32 x 64) on ``device``.

    Two warm-up steps, then steps until ``seconds`` have passed (at least three). The global
    random state is restored afterwards, so a run's seed means the same with or without it.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _probe(device, seconds)


def model_chars_per_s(
    model: ModelConfig, train: TrainConfig, vocab_size: int, device: torch.device
) -> float:
    """Training chars/s of ``model`` at ``train``'s batch shape on ``device``: a few timed steps
    of the real network (fp32, about 0.3 s), the random state restored afterwards."""
    config = dataclasses.replace(model, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        net = build_model(config).to(device)
        shape = (train.batch_size, train.seq_len + 1)
        return _time_steps(
            lambda ids: net(ids)[0], list(net.parameters()), shape, vocab_size, device, 0.3
        )


def _probe(device: torch.device, seconds: float) -> float:
    torch.manual_seed(0)
    vocab = 96
    embed = torch.nn.Embedding(vocab, 32).to(device)
    rnn = torch.nn.LSTM(32, 256, batch_first=True).to(device)
    head = torch.nn.Linear(256, vocab).to(device)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    return _time_steps(
        lambda ids: head(rnn(embed(ids))[0]), params, (32, 65), vocab, device, seconds
    )


def _time_steps(
    forward: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.nn.Parameter],
    shape: tuple[int, int],
    vocab: int,
    device: torch.device,
    seconds: float,
) -> float:
    """Chars/s of training steps (forward, cross-entropy, backward, AdamW) on random ids of
    ``shape`` (batch, length + 1): two warm-up steps, then steps for ``seconds`` (at least 3)."""
    optimizer = AdamW(params, lr=1e-3)  # the trainer's own (torch.optim pulls in dynamo)
    ids = torch.randint(0, vocab, shape, device=device)

    def step() -> None:
        logits = forward(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        step()
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * shape[0] * (shape[1] - 1) / (time.perf_counter() - start)


def budget_reference_minutes(
    train: TrainConfig, train_tokens: int, chars_per_s: float, explicit: dict[str, Any]
) -> tuple[float, str]:
    """The budget in reference minutes, and how to say it (``3 min``, ``500 steps``, ...)."""
    if train.steps is not None:
        tokens = train.steps * explicit.get("batch_size", 32) * explicit.get("seq_len", 64)
        return tokens / REFERENCE_CHARS_PER_S / 60, f"{train.steps:,} steps"
    if train.epochs is not None:
        tokens = train.epochs * train_tokens
        return tokens / REFERENCE_CHARS_PER_S / 60, f"{train.epochs:g} epochs"
    minutes = train.minutes if train.minutes is not None else DEFAULT_MINUTES
    return minutes * chars_per_s / REFERENCE_CHARS_PER_S, f"{minutes:g} min"


def describe(model: ModelConfig, train: TrainConfig) -> str:
    """``LSTM 256, dropout 0.3, weight decay 0.1, 32 x 96, lr 0.004``."""
    if model.family == "transformer":
        parts = [f"Transformer {model.num_layers} x {model.hidden_size}"]
    else:
        layers = f" x {model.num_layers}" if model.num_layers > 1 else ""
        parts = [f"{model.family.upper()} {model.hidden_size}{layers}"]
    if model.dropout:
        parts.append(f"dropout {model.dropout:g}")
    if train.weight_decay:
        parts.append(f"weight decay {train.weight_decay:g}")
    parts.append(f"batch {train.batch_size} x {train.seq_len}, lr {train.lr:g}")
    return ", ".join(parts)


def size_text(n: int) -> str:
    """``18K``, ``1.1M``, ``950``."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


def choose(
    train: TrainConfig,
    explicit: dict[str, Any],
    train_tokens: int,
    chars_per_s: float,
    measure: Callable[[ModelConfig, TrainConfig], float],
    unit: str = "chars",
) -> tuple[ModelConfig, TrainConfig, Choice]:
    """The candidate's configs with the budget, the user's ``explicit`` fields and auto's
    evaluation and patience settings applied; and the ``Choice`` that says why.

    ``chars_per_s`` is the probe's speed here; ``measure(model, train)`` the training speed of
    the configuration finally chosen (for the evaluation cadence).
    """
    reference, budget_text = budget_reference_minutes(train, train_tokens, chars_per_s, explicit)
    name = pick(train_tokens, reference)
    preset = candidate_preset(name)
    minutes = train.minutes
    if train.steps is None and train.epochs is None and minutes is None:
        minutes = DEFAULT_MINUTES
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model = dataclasses.replace(
        preset.model, **{k: v for k, v in explicit.items() if k in model_fields}
    )
    given = {k: v for k, v in explicit.items() if k in train_fields}
    tuned = dataclasses.replace(
        preset.train, steps=train.steps, epochs=train.epochs, minutes=minutes, **given
    )
    evaluation = _evaluation(tuned, train_tokens, measure(model, tuned))
    if "patience" in explicit:  # the user's own patience rule replaces auto's
        del evaluation["patience_share"]
    tuned = dataclasses.replace(tuned, **{k: v for k, v in evaluation.items() if k not in explicit})
    line = (
        f"auto: {size_text(train_tokens)} training {unit}, {budget_text} "
        f"(= {reference:.2g} reference min at {chars_per_s:,.0f} probe chars/s) "
        f"-> {describe(model, tuned)} ({RESULTS})"
    )
    return model, tuned, Choice(name, train_tokens, round(reference, 4), round(chars_per_s), line)


def planned_steps(train: TrainConfig, train_tokens: int, chars_per_s: float) -> float:
    """Optimizer steps the budget will take: given, from epochs, or from minutes at this speed."""
    per_step = train.batch_size * train.seq_len * train.grad_accum
    if train.steps is not None:
        return float(train.steps)
    if train.epochs is not None:
        return train.epochs * train_tokens / per_step
    return (train.minutes or DEFAULT_MINUTES) * 60 * chars_per_s / per_step


def _evaluation(train: TrainConfig, train_tokens: int, chars_per_s: float) -> dict[str, Any]:
    """Evaluation cadence and patience: at least ``EVALUATIONS`` evaluations over the budget and
    at least one per epoch (a small text read many times over is memorised between two
    evaluations otherwise: its best comes in the first few hundred steps whatever the budget),
    their cost under ``EVAL_SHARE`` of it (an evaluation runs about 3x faster than training),
    and never more often than every ``MIN_EVAL_EVERY`` steps."""
    steps = planned_steps(train, train_tokens, chars_per_s)
    per_step = train.batch_size * train.seq_len * train.grad_accum
    seconds = steps * per_step / chars_per_s
    epochs = steps * per_step / max(1, train_tokens)
    val_tokens = min(EVAL_MAX_TOKENS, max(1, train_tokens // 9))  # the split is 90 / 10
    affordable = EVAL_SHARE * seconds * 3 * chars_per_s / val_tokens
    evaluations = max(4.0, min(max(EVALUATIONS, epochs), affordable))
    return {
        "eval_every": max(MIN_EVAL_EVERY, round(steps / evaluations)),
        "eval_max_tokens": EVAL_MAX_TOKENS,
        "patience_share": PATIENCE_SHARE,
    }
