"""Configuration dataclasses and named presets.

``ModelConfig`` says what network to build, ``TrainConfig`` how to train it and ``DataConfig``
where the text comes from; ``RunConfig`` is the three as a run's ``config.json`` stores them.
Each round-trips through JSON (``to_dict`` / ``from_dict``) and the CLI flags map onto their
fields one to one. A preset is a named pair of instances, not code (``presets.py``; its names
are importable from here too). ``build_configs`` makes a new run's configs from a preset and
options; ``resume_overrides`` is the rule for what a resumed run may change.

``from_dict`` checks every value's type against the field's annotation (a bool is not an
integer, an integral float such as ``64.0`` is taken as ``64``, anything else of the wrong type
is refused) and ``validate`` checks ranges, including upper bounds on every size that decides an
allocation, so a hostile ``config.json`` is one line of error, never a traceback or an attempt
to allocate a terabyte (the checks themselves: ``config_checks.py``).
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargen.config_checks import MAX_COUNT as MAX_COUNT  # importable from here, as before
from chargen.config_checks import (  # check_compatible, estimate_parameters: from here too
    _check_float,
    _check_int,
    _check_str,
    _from_dict,
    _is_int,
    _short,
    estimate_parameters,
)
from chargen.config_checks import check_compatible as check_compatible
from chargen.errors import ChargenError, CheckpointError, ConfigError
from chargen.fields import option
from chargen.version import __version__

if TYPE_CHECKING:  # at run time these come from presets.py on first use (it imports this module)
    from chargen.presets import DEFAULT_PRESET as DEFAULT_PRESET
    from chargen.presets import PRESETS as PRESETS
    from chargen.presets import Preset as Preset
    from chargen.presets import get_preset as get_preset

MODEL_FAMILIES = ("lstm", "gru", "transformer")
POSITION_KINDS = ("rotary", "learned")
BATCHING_SCHEMES = ("streams", "windows")
OPTIMIZERS = ("adamw", "rmsprop", "adam", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
# TrainConfig fields that belong to the process, not the run: a resumed run may change them
RUNTIME_FIELDS = ("threads", "device", "compile")
SCHEDULES = ("cosine", "constant")
LOG_KINDS = ("none", "tensorboard")
TOKENIZER_KINDS = ("char", "word", "bpe")
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0, 1.2)

# Upper bounds: generous for a character model on one machine, far below what would exhaust it.
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights
MAX_LAYERS = 64
MAX_WIDTH = 1 << 16  # hidden_size, embed_dim
MAX_HEADS = 1024
MAX_CONTEXT = 1 << 16  # Transformer context_size (its KV cache grows with it)
MAX_VOCAB = 1 << 20  # 1,048,576 tokens: ids fit int32; a larger word vocabulary needs --max-vocab
MAX_BATCH = 1 << 16  # batch_size, grad_accum
MAX_SEQ = 1 << 16  # seq_len, maxlen
MAX_SAMPLE_LENGTH = 1 << 20
MAX_TEMPERATURES = 32
MAX_THREADS = 4096
MAX_SEED = (1 << 63) - 1  # torch and NumPy take seeds in [0, 2**63)
RUN_FORMAT = "chargen-run"  # config.json's "format" and "version"
RUN_VERSION = 1
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]{1,4})?")

# the names of presets.py, importable from here too (see __getattr__ at the end)
_PRESET_NAMES = frozenset({"DEFAULT_PRESET", "PRESETS", "Preset", "get_preset"})


@dataclass
class ModelConfig:
    """The network: token embedding -> LSTM / GRU / Transformer layers -> linear head.

    ``embed_dim`` is the token embedding width (``0`` feeds one-hot vectors straight into the
    first recurrent layer, as the seed program does); ``hidden_size`` is the recurrent width or
    the Transformer's model width, with a linear map between the two when they differ.
    ``tie_weights`` shares the embedding matrix with the output head; ``layer_norm`` normalises
    the top recurrent layer's output (Transformers always use pre-norm blocks).
    ``num_heads``, ``context_size`` and ``positions`` apply to the Transformer only.

    Limits: ``vocab_size`` <= ``MAX_VOCAB`` (1,048,576), ``embed_dim`` and ``hidden_size`` <=
    ``MAX_WIDTH`` (65,536), ``num_layers`` <= ``MAX_LAYERS`` (64), ``num_heads`` <= 1,024,
    ``context_size`` <= ``MAX_CONTEXT`` (65,536), and at most ``MAX_PARAMETERS`` (2e9)
    parameters in all (``estimate_parameters``), checked before anything is allocated.
    """

    family: str = option("lstm", "lstm, gru or transformer", flag="--model")
    vocab_size: int = option(0, "the number of tokens (set from the tokenizer)", cli=False)
    embed_dim: int = option(
        64, "token embedding width; 0 feeds one-hot vectors as the book does (RNNs)"
    )
    hidden_size: int = option(512, "units per recurrent layer, or the transformer's model width")
    num_layers: int = option(1, "recurrent layers or transformer blocks", flag="--layers")
    dropout: float = option(0.0, "dropout on inputs, outputs and between layers (and on attention)")
    tie_weights: bool = option(False, "share the embedding matrix with the output head")
    layer_norm: bool = option(False, "RNNs: layer-normalise the top layer's output before the head")
    num_heads: int = option(4, "transformer: attention heads")
    context_size: int = option(256, "transformer: tokens each position attends to (sliding window)")
    positions: str = option(
        "rotary", "transformer: rotary (default; one cached step per token) or learned"
    )

    def validate(self) -> ModelConfig:
        """Raise ConfigError on an unusable value; return self."""
        _check_str(self.family, "--model")
        if self.family not in MODEL_FAMILIES:
            raise ConfigError(
                f"--model must be one of {', '.join(MODEL_FAMILIES)}, got {self.family!r}"
            )
        if not _is_int(self.vocab_size) or not 0 <= self.vocab_size <= MAX_VOCAB:
            raise ConfigError(
                f"vocab_size must be an integer in [0, {MAX_VOCAB:,}], got "
                f"{_short.repr(self.vocab_size)}; a larger vocabulary needs --max-vocab"
            )
        _check_int(self.embed_dim, "--embed-dim", low=0, high=MAX_WIDTH)
        _check_int(self.hidden_size, "--hidden-size", low=1, high=MAX_WIDTH)
        _check_int(self.num_layers, "--layers", low=1, high=MAX_LAYERS)
        _check_float(self.dropout, "--dropout", low=0.0, high=1.0, high_open=True)
        for flag, value in (("--tie-weights", self.tie_weights), ("--layer-norm", self.layer_norm)):
            if not isinstance(value, bool):
                raise ConfigError(f"{flag} must be true or false, got {value!r}")
        if self.tie_weights and self.embed_dim == 0:
            raise ConfigError("--tie-weights needs an embedding (--embed-dim > 0)")
        _check_int(self.num_heads, "--num-heads", low=1, high=MAX_HEADS)
        _check_int(self.context_size, "--context-size", low=1, high=MAX_CONTEXT)
        _check_str(self.positions, "--positions")
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
        params = estimate_parameters(self)
        if params > MAX_PARAMETERS:
            raise ConfigError(
                f"the model would have {params:,} parameters, more than the {MAX_PARAMETERS:,} "
                "chargen builds; lower --hidden-size, --layers or --embed-dim (or --max-vocab)"
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

    Limits: ``batch_size`` and ``grad_accum`` <= ``MAX_BATCH`` (65,536), ``seq_len`` and
    ``maxlen`` <= ``MAX_SEQ`` (65,536), ``sample_length`` <= 1,048,576, at most 32
    ``sample_temperatures``, ``threads`` <= 4,096, ``seed`` in [0, 2**63), other counts < 2**62.
    """

    batching: str = option(
        "streams", "streams (truncated BPTT, default) or windows (the book's scheme)"
    )
    batch_size: int = option(32, "streams (or windows) per step")
    seq_len: int = option(128, "streams: tokens per step and stream (BPTT length)")
    maxlen: int = option(60, "windows: window length")
    window_step: int = option(3, "windows: distance between window starts")
    optimizer: str = option("adamw", "adamw, adam, rmsprop or sgd")
    lr: float = option(3e-3, "peak learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay on matrices")
    schedule: str = option("cosine", "cosine (after warm-up) or constant")
    warmup_steps: int = option(50, "steps of linear learning-rate warm-up")
    min_lr_ratio: float = option(0.1, "cosine floor as a fraction of --lr")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: off)")
    on_nan: str = option(
        "stop",
        "a NaN/inf loss: stop (keep the last good checkpoint) or skip the batch and halve the lr",
    )
    grad_accum: int = option(
        1, "accumulate gradients over N consecutive batches per optimizer step"
    )
    precision: str = option(
        "auto",
        "auto (bf16 autocast where the CPU or GPU computes bf16 natively, else fp32), fp32 or bf16",
    )
    steps: int | None = option(None, "train for S optimizer steps (--steps)", cli=False)
    epochs: float | None = option(
        None, "train for E passes over the training split (--epochs)", cli=False
    )
    minutes: float | None = option(None, "train for M minutes of wall time (--minutes)", cli=False)
    eval_every: int = option(
        200, "evaluate every N steps (and at the end of an epoch of at least N steps)"
    )
    eval_max_tokens: int = option(1_000_000, "evaluate on at most this many validation tokens")
    checkpoint_every: int = option(200, "write trainer.safetensors every N steps")
    val_fraction: float = option(
        0.1, "fraction kept for validation: the end of the text, or random lines with --lines"
    )
    seed: int = option(1337, "random seed (weights, dropout, data order, samples)")
    threads: int | None = option(None, "CPU threads for torch (default: torch's choice)")
    device: str = option("auto", "auto, cpu or cuda[:N]")
    compile: bool = option(
        False, "torch.compile the training forward pass (on the CPU: needs a C++ compiler)"
    )
    sample_length: int = option(400, "characters per training sample (0: none)")
    sample_temperatures: tuple[float, ...] = option(
        SAMPLE_TEMPERATURES, "temperatures of those samples"
    )
    sample_every: float = option(
        30.0, "seconds between blocks of training samples (default 30; one more at the end)"
    )
    patience: int | None = option(
        None, "stop after N evaluations without a new best validation loss (default: never)"
    )
    patience_share: float | None = option(
        None, "stop once no new best came for this share of the budget, in (0, 1]"
    )
    log: str = option(
        "none",
        "tensorboard: the metrics and samples also as TensorBoard events in RUN/tb/ "
        "(needs chargen[tensorboard]; view with: tensorboard --logdir runs/)",
    )

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
        _check_int(self.batch_size, "--batch-size", low=1, high=MAX_BATCH)
        _check_int(self.seq_len, "--seq-len", low=1, high=MAX_SEQ)
        _check_int(self.maxlen, "--maxlen", low=1, high=MAX_SEQ)
        _check_int(self.window_step, "--window-step", low=1)
        _check_float(self.lr, "--lr", low=0.0, low_open=True)
        _check_float(self.weight_decay, "--weight-decay", low=0.0)
        _check_int(self.warmup_steps, "--warmup-steps", low=0)
        _check_float(self.min_lr_ratio, "--min-lr-ratio", low=0.0, high=1.0)
        _check_float(self.grad_clip, "--grad-clip", low=0.0)
        _check_int(self.grad_accum, "--grad-accum", low=1, high=MAX_BATCH)
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
            _check_int(self.threads, "--threads", low=1, high=MAX_THREADS)
        _check_int(self.seed, "--seed", low=0, high=MAX_SEED)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"--device must be auto, cpu or cuda[:N], got {_short.repr(self.device)}"
            )
        if not isinstance(self.compile, bool):
            raise ConfigError(f"--compile must be true or false, got {_short.repr(self.compile)}")
        _check_int(self.sample_length, "--sample-length", low=0, high=MAX_SAMPLE_LENGTH)
        if (
            not isinstance(self.sample_temperatures, tuple)
            or len(self.sample_temperatures) > MAX_TEMPERATURES
        ):
            raise ConfigError(
                f"--sample-temperatures must be at most {MAX_TEMPERATURES} numbers, got "
                f"{_short.repr(self.sample_temperatures)}"
            )
        for t in self.sample_temperatures:
            _check_float(t, "--sample-temperatures", low=0.0)
        _check_float(self.sample_every, "--sample-every", low=0.0)
        if self.patience is not None:
            _check_int(self.patience, "--patience", low=1)
        if self.patience_share is not None:
            _check_float(self.patience_share, "--patience-share", low=0.0, high=1.0, low_open=True)
        if self.log not in LOG_KINDS:
            raise ConfigError(
                f"--log must be one of {', '.join(LOG_KINDS)}, got {_short.repr(self.log)}"
            )
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
    """Where the text comes from and how it is decoded and tokenised.

    Limits: ``max_vocab`` in [2, ``MAX_VOCAB``]; ``encoding`` a codec Python knows.
    """

    source: str = option(
        "python-docs", "file, folder, glob or corpus name (the train command's SOURCE)", cli=False
    )
    encoding: str | None = option(
        None, "text encoding (default utf-8; a named corpus knows its own)"
    )
    errors: str = option("strict", "undecodable bytes: strict (default), replace or ignore")
    lowercase: bool = option(False, "lower-case the text, as the book does")
    tokenizer: str = option(
        "char", "char (default), word, or bpe (subword pieces; needs chargen[bpe])"
    )
    max_vocab: int | None = option(
        None,
        "char/word: keep the most frequent tokens plus <unk>; "
        "bpe: the target vocabulary size (default 1024)",
    )
    data_dir: str | None = option(
        None, "folder holding nietzsche.txt / tinyshakespeare.txt (or set CHARGEN_DATA)"
    )
    lines: bool = option(
        False,
        "each non-empty line is one example (names, titles, words): a fresh state per item, "
        "a random 10% of the lines held out (lines.py)",
    )

    def validate(self) -> DataConfig:
        """Raise ConfigError on an unusable value; return self."""
        _check_str(self.source, "SOURCE")
        _check_str(self.tokenizer, "--tokenizer")
        _check_str(self.errors, "--errors")
        for flag, flag_value in (("--lowercase", self.lowercase), ("--lines", self.lines)):
            if not isinstance(flag_value, bool):
                raise ConfigError(f"{flag} must be true or false, got {_short.repr(flag_value)}")
        for flag, value in (("--encoding", self.encoding), ("--data-dir", self.data_dir)):
            if value is not None:
                _check_str(value, flag)
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(
                    f"--encoding {_short.repr(self.encoding)} is not an encoding Python knows"
                ) from None
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ConfigError(
                f"--tokenizer must be one of {', '.join(TOKENIZER_KINDS)}, got {self.tokenizer!r}"
            )
        if self.errors not in ("strict", "replace", "ignore"):
            raise ConfigError(f"--errors must be strict, replace or ignore, got {self.errors!r}")
        if self.max_vocab is not None:
            _check_int(self.max_vocab, "--max-vocab", low=2, high=MAX_VOCAB)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return _from_dict(cls, data, "data config")


@dataclass
class RunConfig:
    """The three configurations of a run, as stored in ``config.json``; with ``--preset auto``
    also what it chose and why (``auto``: a record for people and benchmarks, never read back
    into a setting)."""

    model: ModelConfig
    train: TrainConfig
    data: DataConfig
    auto: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "chargen_version": __version__,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
        }
        if self.auto is not None:
            out["auto"] = self.auto
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config.json") -> RunConfig:
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise CheckpointError(f"{where}: not a chargen run configuration")
        version = data.get("version")
        if version != RUN_VERSION:
            raise CheckpointError(
                f"{where}: run format version {version!r} is not supported by this chargen "
                f"(reads version {RUN_VERSION}); use the chargen version that wrote it"
            )
        try:
            return cls(
                ModelConfig.from_dict(data["model"]).validate(),
                TrainConfig.from_dict(data["train"]).validate(),
                DataConfig.from_dict(data["data"]).validate(),
                data["auto"] if isinstance(data.get("auto"), dict) else None,
            )
        except KeyError as exc:
            raise CheckpointError(f"{where}: missing section {exc.args[0]!r}") from None
        except (ChargenError, TypeError) as exc:
            raise CheckpointError(f"{where}: {exc}") from None


def build_configs(
    source: str, preset: str, budget: dict[str, Any], options: dict[str, Any]
) -> tuple[ModelConfig, TrainConfig, DataConfig]:
    """A preset's configs with ``budget`` (steps / epochs / minutes) and field ``options`` applied
    (ConfigError on unknown names); the one way the CLI, the API and the demo make a new run's."""
    from chargen.presets import get_preset  # presets.py imports this module

    chosen = get_preset(preset)
    groups: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    owners = {
        **{f.name: "model" for f in dataclasses.fields(ModelConfig)},
        **{f.name: "train" for f in dataclasses.fields(TrainConfig)},
        **{f.name: "data" for f in dataclasses.fields(DataConfig)},
    }
    for name, value in options.items():
        if name not in owners or name in ("source", "vocab_size"):
            raise ConfigError(f"unknown training option {name!r}")
        groups[owners[name]][name] = value
    train_cfg = chosen.train
    if budget:
        train_cfg = dataclasses.replace(
            train_cfg, **{"steps": None, "epochs": None, "minutes": None, **budget}
        )
    return (
        dataclasses.replace(chosen.model, **groups["model"]),
        dataclasses.replace(train_cfg, **groups["train"]),
        DataConfig(source=source, **groups["data"]),
    )


def resume_overrides(
    options: dict[str, Any], spell: Callable[[str], str] = str
) -> tuple[dict[str, Any], str | None]:
    """The one rule for what a resumed run may change, besides its budget: of the field values
    in ``options``, the runtime settings (``RUNTIME_FIELDS``, this process's, never saved) and
    ``data_dir`` (where a named corpus is cached). Returns (runtime, data_dir); ConfigError
    naming every other field, each written as ``spell`` writes a field name (a flag, a keyword)."""
    refused = sorted(name for name in options if name not in (*RUNTIME_FIELDS, "data_dir"))
    if refused:
        allowed = ", ".join(spell(name) for name in RUNTIME_FIELDS)
        budget = "/".join(spell(name) for name in ("steps", "epochs", "minutes"))
        raise ConfigError(
            f"cannot change {', '.join(spell(name) for name in refused)} when resuming; only "
            f"the budget ({budget}), {allowed} and {spell('data_dir')} may change"
        )
    runtime = {name: options[name] for name in RUNTIME_FIELDS if name in options}
    return runtime, options.get("data_dir")


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """The preset names, from ``presets.py`` (imported here on first use: it imports this
        module for ``ModelConfig`` and ``TrainConfig``, so this module cannot import it first)."""
        if name in _PRESET_NAMES:
            from chargen import presets

            return getattr(presets, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
