"""Configuration dataclasses and named presets.

``ModelConfig`` says what network to build, ``TrainConfig`` how to train it and ``DataConfig``
where the text comes from. Each round-trips through JSON (``to_dict`` / ``from_dict``) and the
CLI flags map onto their fields one to one. A preset is a named pair of instances, not code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from chargen.errors import ConfigError

T = TypeVar("T")

MODEL_FAMILIES = ("lstm", "gru", "transformer")
POSITION_KINDS = ("rotary", "learned")
BATCHING_SCHEMES = ("streams", "windows")
OPTIMIZERS = ("adamw", "rmsprop", "adam", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
# TrainConfig fields that belong to the process, not the run: a resumed run may change them
RUNTIME_FIELDS = ("threads", "device", "compile")
SCHEDULES = ("cosine", "constant")
TOKENIZER_KINDS = ("char", "word", "bpe")
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0, 1.2)


def _from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys are a ConfigError naming ``what``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**kwargs)


@dataclass
class ModelConfig:
    """The network: token embedding -> LSTM / GRU / Transformer layers -> linear head.

    ``embed_dim`` is the token embedding width (``0`` feeds one-hot vectors straight into the
    first recurrent layer, as the seed program does); ``hidden_size`` is the recurrent width or
    the Transformer's model width, with a linear map between the two when they differ.
    ``tie_weights`` shares the embedding matrix with the output head; ``layer_norm`` normalises
    the top recurrent layer's output (Transformers always use pre-norm blocks).
    ``num_heads``, ``context_size`` and ``positions`` apply to the Transformer only.
    """

    family: str = "lstm"
    vocab_size: int = 0
    embed_dim: int = 64
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0
    tie_weights: bool = False
    layer_norm: bool = False
    num_heads: int = 4
    context_size: int = 256
    positions: str = "rotary"

    def validate(self) -> ModelConfig:
        """Raise ConfigError on an unusable value; return self."""
        if self.family not in MODEL_FAMILIES:
            raise ConfigError(
                f"--model must be one of {', '.join(MODEL_FAMILIES)}, got {self.family!r}"
            )
        _check_int(self.embed_dim, "--embed-dim", low=0)
        _check_int(self.hidden_size, "--hidden-size", low=1)
        _check_int(self.num_layers, "--layers", low=1)
        _check_float(self.dropout, "--dropout", low=0.0, high=1.0, high_open=True)
        for flag, value in (("--tie-weights", self.tie_weights), ("--layer-norm", self.layer_norm)):
            if not isinstance(value, bool):
                raise ConfigError(f"{flag} must be true or false, got {value!r}")
        if self.tie_weights and self.embed_dim == 0:
            raise ConfigError("--tie-weights needs an embedding (--embed-dim > 0)")
        _check_int(self.num_heads, "--num-heads", low=1)
        _check_int(self.context_size, "--context-size", low=1)
        if self.positions not in POSITION_KINDS:
            raise ConfigError(
                f"--positions must be one of {', '.join(POSITION_KINDS)}, got {self.positions!r}"
            )
        if self.family == "transformer":
            if self.embed_dim == 0:
                raise ConfigError("--model transformer needs an embedding (--embed-dim > 0)")
            if self.hidden_size % self.num_heads:
                raise ConfigError(
                    f"--hidden-size ({self.hidden_size}) must be a multiple of --num-heads "
                    f"({self.num_heads}) for a transformer"
                )
            if self.positions == "rotary" and (self.hidden_size // self.num_heads) % 2:
                raise ConfigError(
                    "rotary positions need an even head width (--hidden-size / --num-heads)"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "model config")


@dataclass
class TrainConfig:
    """How to train: batching scheme, optimiser, schedule, budget, evaluation and sampling.

    The budget is the first of ``steps``, ``epochs`` or ``minutes`` that is set; with
    ``minutes`` the learning-rate schedule follows elapsed time instead of the step count.
    """

    batching: str = "streams"
    batch_size: int = 32
    seq_len: int = 128
    maxlen: int = 60
    window_step: int = 3
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    on_nan: str = "stop"
    grad_accum: int = 1
    precision: str = "auto"
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    eval_every: int = 200
    eval_max_tokens: int = 1_000_000
    checkpoint_every: int = 200
    val_fraction: float = 0.1
    seed: int = 1337
    threads: int | None = None
    device: str = "auto"
    compile: bool = False
    sample_length: int = 400
    sample_temperatures: tuple[float, ...] = SAMPLE_TEMPERATURES

    def validate(self) -> TrainConfig:
        """Raise ConfigError on an unusable value; return self."""
        if self.batching not in BATCHING_SCHEMES:
            raise ConfigError(
                f"--batching must be one of {', '.join(BATCHING_SCHEMES)}, got {self.batching!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        _check_int(self.batch_size, "--batch-size", low=1)
        _check_int(self.seq_len, "--seq-len", low=1)
        _check_int(self.maxlen, "--maxlen", low=1)
        _check_int(self.window_step, "--window-step", low=1)
        _check_float(self.lr, "--lr", low=0.0, low_open=True)
        _check_float(self.weight_decay, "--weight-decay", low=0.0)
        _check_int(self.warmup_steps, "--warmup-steps", low=0)
        _check_float(self.min_lr_ratio, "--min-lr-ratio", low=0.0, high=1.0)
        _check_float(self.grad_clip, "--grad-clip", low=0.0)
        _check_int(self.grad_accum, "--grad-accum", low=1)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.on_nan not in ("stop", "skip"):
            raise ConfigError(f"--on-nan must be stop or skip, got {self.on_nan!r}")
        if self.steps is not None:
            _check_int(self.steps, "--steps", low=1)
        if self.epochs is not None:
            _check_float(self.epochs, "--epochs", low=0.0, low_open=True)
        if self.minutes is not None:
            _check_float(self.minutes, "--minutes", low=0.0, low_open=True)
        _check_int(self.eval_every, "--eval-every", low=1)
        _check_int(self.eval_max_tokens, "--eval-max-tokens", low=2)
        _check_int(self.checkpoint_every, "--checkpoint-every", low=1)
        _check_float(self.val_fraction, "--val-fraction", low=0.0, high=0.5, low_open=True)
        if self.threads is not None:
            _check_int(self.threads, "--threads", low=1)
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda[:N], got {self.device!r}")
        _check_int(self.sample_length, "--sample-length", low=0)
        for t in self.sample_temperatures:
            _check_float(t, "--sample-temperatures", low=0.0)
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sample_temperatures"] = list(self.sample_temperatures)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data, "train config")


@dataclass
class DataConfig:
    """Where the text comes from and how it is decoded and tokenised."""

    source: str = "python-docs"
    encoding: str | None = None
    errors: str = "strict"
    lowercase: bool = False
    tokenizer: str = "char"
    max_vocab: int | None = None
    data_dir: str | None = None

    def validate(self) -> DataConfig:
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ConfigError(
                f"--tokenizer must be one of {', '.join(TOKENIZER_KINDS)}, got {self.tokenizer!r}"
            )
        if self.errors not in ("strict", "replace", "ignore"):
            raise ConfigError(f"--errors must be strict, replace or ignore, got {self.errors!r}")
        if self.max_vocab is not None:
            _check_int(self.max_vocab, "--max-vocab", low=2)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return _from_dict(cls, data, "data config")


def check_compatible(model: ModelConfig, train: TrainConfig) -> None:
    """ConfigError when the model cannot be trained as ``train`` says (a Transformer's
    training windows must fit its context)."""
    if model.family != "transformer":
        return
    length, flag = (
        (train.seq_len, "--seq-len") if train.batching == "streams" else (train.maxlen, "--maxlen")
    )
    if length > model.context_size:
        raise ConfigError(
            f"{flag} ({length}) must be <= --context-size ({model.context_size}) for a transformer"
        )


@dataclass(frozen=True)
class Preset:
    """A named starting point: a model and a training configuration."""

    name: str
    description: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS: dict[str, Preset] = {
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
        "LSTM 512, 1 layer with dropout: the default (1.32 nats/char on nietzsche in 3 minutes on 2 CPU cores)",
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
DEFAULT_PRESET = "medium"


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


def _check_int(value: Any, flag: str, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{flag} must be an integer >= {low}, got {value!r}")


def _check_float(
    value: Any,
    flag: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        rng = (
            f"in {lo}, {hi}"
            if low is not None and high is not None
            else (f"> {low:g}" if low_open else f">= {low:g}")
        )
        raise ConfigError(f"{flag} must be {rng}, got {value!r}")
