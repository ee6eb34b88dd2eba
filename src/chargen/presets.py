"""Named presets: each a starting point for ``chargen train`` (``--preset NAME``).

A preset is a named pair of configuration instances (``config.ModelConfig`` and
``config.TrainConfig``), not code; ``get_preset`` hands out a fresh copy of one, so a caller
may change it freely. ``DEFAULT_PRESET`` is the one used when none is named.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from chargen.config import ModelConfig, TrainConfig
from chargen.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """A named starting point: a model and a training configuration."""

    name: str
    description: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS: dict[str, Preset] = {
    "auto": Preset(
        "auto",
        "the default: family, width, dropout, batch and learning rate chosen from the corpus "
        "size, the budget (3 minutes unless given) and a speed probe of this machine, by the "
        "table measured in benchmarks/RESULTS.md#auto",
        ModelConfig(embed_dim=64, hidden_size=512, num_layers=1, dropout=0.1),
        TrainConfig(batch_size=32, seq_len=64, lr=5e-3, minutes=3.0),
    ),
    "seed": Preset(
        "seed",
        "the seed program of DLwP 8.1: one-hot input, LSTM(128), windows of 60 every 3 chars, "
        "RMSprop lr 0.01, batch 128, 60 epochs",
        ModelConfig(embed_dim=0, hidden_size=128, num_layers=1, dropout=0.0),
        TrainConfig(
            batching="windows",
            batch_size=128,
            maxlen=60,
            window_step=3,
            optimizer="rmsprop",
            lr=0.01,
            weight_decay=0.0,
            schedule="constant",
            warmup_steps=0,
            grad_clip=0.0,
            precision="fp32",
            epochs=60,
            eval_every=1_000_000,
            checkpoint_every=500,
            sample_every=0.0,  # samples after every epoch, as the book's program prints them
        ),
    ),
    "quick": Preset(
        "quick",
        "LSTM 192, short windows, high learning rate: past the seed program's two-epoch loss "
        "on nietzsche in about 6 seconds on 2 CPU cores",
        ModelConfig(embed_dim=64, hidden_size=192, num_layers=1, dropout=0.0),
        TrainConfig(batch_size=32, seq_len=32, lr=2e-2, minutes=0.25),
    ),
    "minute": Preset(
        "minute",
        "LSTM 384, short windows, no dropout: the best one-minute model "
        "(1.51 nats/char on tinyshakespeare in 71 s on 2 CPU cores)",
        ModelConfig(embed_dim=64, hidden_size=384, num_layers=1, dropout=0.0),
        TrainConfig(batch_size=32, seq_len=32, lr=1e-2, minutes=1.0),
    ),
    "small": Preset(
        "small",
        "LSTM 256, 1 layer: quick experiments and tests",
        ModelConfig(embed_dim=32, hidden_size=256, num_layers=1, dropout=0.0),
        TrainConfig(batch_size=32, seq_len=96, lr=4e-3, minutes=1.0),
    ),
    "demo": Preset(
        "demo",
        "what `chargen demo` trains: LSTM 384 for two minutes on 2 CPU cores",
        ModelConfig(embed_dim=48, hidden_size=384, num_layers=1, dropout=0.0),
        TrainConfig(batch_size=32, seq_len=96, lr=4e-3, minutes=2.0, eval_every=150),
    ),
    "medium": Preset(
        "medium",
        "LSTM 512, 1 layer with dropout: the default before auto (1.32 nats/char on nietzsche in 3 minutes on 2 CPU cores)",
        ModelConfig(embed_dim=64, hidden_size=512, num_layers=1, dropout=0.1),
        TrainConfig(batch_size=32, seq_len=64, lr=5e-3, minutes=3.0),
    ),
    "long": Preset(
        "long",
        "LSTM 512 with dropout 0.25 and weight decay 0.1: 1.42 nats/char on tinyshakespeare in 10 minutes on 2 CPU cores",
        ModelConfig(embed_dim=64, hidden_size=512, num_layers=1, dropout=0.25),
        TrainConfig(batch_size=32, seq_len=64, lr=5e-3, weight_decay=0.1, minutes=10.0),
    ),
    "transformer": Preset(
        "transformer",
        "decoder-only Transformer, 4 blocks x 128 wide, 4 heads, context 64, rotary, tied",
        ModelConfig(
            family="transformer",
            embed_dim=128,
            hidden_size=128,
            num_layers=4,
            num_heads=4,
            context_size=64,
            tie_weights=True,
        ),
        TrainConfig(batch_size=32, seq_len=64, lr=3e-3, warmup_steps=100, minutes=3.0),
    ),
    "large": Preset(
        "large",
        "LSTM 512 x 2 layers with dropout: for long runs or a GPU",
        ModelConfig(embed_dim=128, hidden_size=512, num_layers=2, dropout=0.25),
        TrainConfig(batch_size=64, seq_len=128, lr=2e-3, minutes=15.0),
    ),
}
DEFAULT_PRESET = "auto"


def get_preset(name: str) -> Preset:
    """Return a fresh copy of preset ``name`` (ConfigError listing the names if unknown)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return Preset(
        preset.name,
        preset.description,
        dataclasses.replace(preset.model),
        dataclasses.replace(preset.train),
    )
