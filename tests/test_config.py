"""Configuration dataclasses (chargen.config): typed ``from_dict``, bounds in ``validate``, the
parameter estimate that guards them, the named presets, a run's ``RunConfig``, ``build_configs``
and the resume rule."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from chargen.config import (
    DEFAULT_PRESET,
    MAX_BATCH,
    MAX_PARAMETERS,
    MAX_SEED,
    MAX_VOCAB,
    MAX_WIDTH,
    PRESETS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    build_configs,
    check_compatible,
    estimate_parameters,
    get_preset,
    resume_overrides,
)
from chargen.errors import ConfigError
from chargen.models import build_model, count_parameters

CLASSES = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}


def test_model_config_round_trips() -> None:
    cfg = ModelConfig(family="gru", vocab_size=30, hidden_size=64, num_layers=2, dropout=0.1)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    tc = TrainConfig(sample_temperatures=(0.3, 1.0), minutes=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc


# ------------------------------------------------------------------------------ from_dict
@pytest.mark.parametrize(
    "kind, data, needle",
    [
        ("model", {"hidden_size": True}, "model config: hidden_size must be an integer, got True"),
        ("model", {"hidden_size": 64.5}, "hidden_size must be an integer, got 64.5"),
        ("model", {"hidden_size": "64"}, "hidden_size must be an integer, got '64'"),
        ("model", {"hidden_size": None}, "hidden_size must be an integer, got None"),
        ("model", {"hidden_size": float("nan")}, "hidden_size must be an integer"),
        ("model", {"hidden_size": float("inf")}, "hidden_size must be an integer"),
        ("model", {"family": 3}, "family must be a string, got 3"),
        ("model", {"tie_weights": 1}, "tie_weights must be true or false, got 1"),
        ("train", {"lr": "fast"}, "train config: lr must be a number, got 'fast'"),
        ("train", {"lr": False}, "lr must be a number, got False"),
        ("train", {"steps": "10"}, "steps must be an integer, got '10'"),
        ("train", {"sample_temperatures": 0.5}, "sample_temperatures must be a list, got 0.5"),
        ("train", {"sample_temperatures": [0.5, "hot"]}, "sample_temperatures must be a number"),
        ("data", {"lowercase": "yes"}, "data config: lowercase must be true or false"),
        ("data", {"max_vocab": 2.5}, "max_vocab must be an integer, got 2.5"),
        ("model", {"hidden": 64}, "model config: unknown field(s) 'hidden'"),
        ("train", {"zeta": 1, "alpha": 2}, "unknown field(s) 'alpha', 'zeta'"),
    ],
)
def test_from_dict_refuses_a_value_of_the_wrong_type_naming_the_field(
    kind: str, data: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        CLASSES[kind].from_dict(data)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["model", "train", "data"])
@pytest.mark.parametrize("value", [[1, 2], "text", 3])
def test_from_dict_refuses_what_is_not_an_object(kind: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"{kind} config: expected an object"):
        CLASSES[kind].from_dict(value)


def test_from_dict_takes_what_json_gives_for_each_type() -> None:
    """JSON has one number type: an integral float is an int, an int is a float; lists are
    tuples; null is None for an optional field."""
    model = ModelConfig.from_dict({"hidden_size": 64.0, "dropout": 0})
    assert model.hidden_size == 64 and type(model.hidden_size) is int
    assert model.dropout == 0
    train = TrainConfig.from_dict(
        {"lr": 1, "epochs": 2, "steps": None, "sample_temperatures": [0.5, 1]}
    )
    assert train.lr == 1 and train.epochs == 2 and train.steps is None
    assert train.sample_temperatures == (0.5, 1) and isinstance(train.sample_temperatures, tuple)
    assert DataConfig.from_dict({"max_vocab": None, "encoding": "latin-1"}).encoding == "latin-1"
    assert ModelConfig.from_dict({}) == ModelConfig()  # every field has a default


# ------------------------------------------------------------------------------- validate
@pytest.mark.parametrize(
    "kind, field, good, bad, flag",
    [
        # (a recurrent layer MAX_WIDTH wide is over the parameter limit: see below)
        ("model", "hidden_size", [1, 4096], [0, MAX_WIDTH + 1, -1], "--hidden-size"),
        ("model", "embed_dim", [0, MAX_WIDTH], [-1, MAX_WIDTH + 1], "--embed-dim"),
        ("model", "num_layers", [1, 64], [0, 65], "--layers"),
        ("model", "dropout", [0.0, 0.999], [1.0, -0.1, math.nan], "--dropout"),
        ("model", "vocab_size", [0, MAX_VOCAB], [-1, MAX_VOCAB + 1], "vocab_size"),
        ("model", "num_heads", [1, 1024], [0, 1025], "--num-heads"),
        ("model", "context_size", [1, 1 << 16], [0, (1 << 16) + 1], "--context-size"),
        ("model", "family", ["gru", "transformer"], ["rnn", ""], "--model"),
        ("model", "positions", ["learned"], ["absolute"], "--positions"),
        ("train", "batch_size", [1, MAX_BATCH], [0, MAX_BATCH + 1], "--batch-size"),
        ("train", "seq_len", [1, 1 << 16], [0, (1 << 16) + 1], "--seq-len"),
        ("train", "lr", [1e-9, 10.0], [0.0, -1.0, math.inf, math.nan], "--lr"),
        ("train", "val_fraction", [0.01, 0.5], [0.0, 0.51], "--val-fraction"),
        ("train", "min_lr_ratio", [0.0, 1.0], [-0.01, 1.01], "--min-lr-ratio"),
        ("train", "grad_accum", [1, MAX_BATCH], [0, MAX_BATCH + 1], "--grad-accum"),
        ("train", "seed", [0, MAX_SEED], [-1, MAX_SEED + 1], "--seed"),
        ("train", "steps", [None, 1], [0, -5], "--steps"),
        ("train", "epochs", [None, 0.01], [0.0, math.inf], "--epochs"),
        ("train", "minutes", [None, 0.01], [0.0, -1.0], "--minutes"),
        ("train", "threads", [None, 1, 4096], [0, 4097], "--threads"),
        ("train", "eval_max_tokens", [2], [1], "--eval-max-tokens"),
        ("train", "device", ["cpu", "cuda", "cuda:3", "auto"], ["tpu", "cuda:", 7], "--device"),
        ("train", "optimizer", ["sgd", "rmsprop"], ["lion"], "--optimizer"),
        ("train", "precision", ["fp32", "bf16"], ["fp16"], "--precision"),
        ("train", "on_nan", ["skip"], ["ignore"], "--on-nan"),
        ("train", "sample_temperatures", [(), (0.0,) * 32], [(0.5,) * 33, (-1.0,)], "--sample"),
        ("train", "patience_share", [None, 1.0], [0.0, 1.5], "--patience-share"),
        ("data", "max_vocab", [None, 2, MAX_VOCAB], [1, MAX_VOCAB + 1], "--max-vocab"),
        ("data", "encoding", [None, "latin-1"], ["klingon"], "--encoding"),
        ("data", "tokenizer", ["word", "bpe"], ["sentencepiece"], "--tokenizer"),
        ("data", "errors", ["replace"], ["surrogateescape"], "--errors"),
    ],
)
def test_validate_checks_each_bound(
    kind: str, field: str, good: list[Any], bad: list[Any], flag: str
) -> None:
    """The last value accepted and the first refused on each side of a bound; the error is one
    line naming the flag."""
    base = CLASSES[kind]() if kind != "data" else DataConfig(source="x")
    for value in good:
        assert dataclasses.replace(base, **{field: value}).validate() is not None
    for value in bad:
        with pytest.raises(ConfigError) as info:
            dataclasses.replace(base, **{field: value}).validate()
        assert flag in str(info.value) and "\n" not in str(info.value), value


def test_validate_checks_combinations_of_fields() -> None:
    with pytest.raises(ConfigError, match="--tie-weights needs an embedding"):
        ModelConfig(embed_dim=0, tie_weights=True).validate()
    with pytest.raises(ConfigError, match="multiple of --num-heads"):
        ModelConfig(family="transformer", hidden_size=66, num_heads=4).validate()
    with pytest.raises(ConfigError, match="even head width"):
        ModelConfig(family="transformer", hidden_size=60, num_heads=4).validate()
    ModelConfig(family="transformer", hidden_size=60, num_heads=4, positions="learned").validate()
    with pytest.raises(ConfigError, match="needs an embedding"):
        ModelConfig(family="transformer", embed_dim=0).validate()
    transformer = ModelConfig(family="transformer", context_size=64)
    check_compatible(transformer, TrainConfig(seq_len=64))
    with pytest.raises(ConfigError, match=r"--seq-len \(65\) must be <= --context-size \(64\)"):
        check_compatible(transformer, TrainConfig(seq_len=65))
    with pytest.raises(ConfigError, match=r"--maxlen \(65\)"):
        check_compatible(transformer, TrainConfig(batching="windows", maxlen=65, seq_len=8))
    check_compatible(ModelConfig(context_size=8), TrainConfig(seq_len=4096))  # RNNs: no limit


def test_validate_refuses_a_model_over_the_parameter_limit_before_building_it() -> None:
    # 1M-token vocabulary x 2048 wide head: 2.1e9 parameters
    huge = ModelConfig(vocab_size=MAX_VOCAB, embed_dim=16, hidden_size=2048)
    assert estimate_parameters(huge) > MAX_PARAMETERS
    with pytest.raises(ConfigError, match="parameters, more than the"):
        huge.validate()
    assert estimate_parameters(dataclasses.replace(huge, hidden_size=1024)) < MAX_PARAMETERS


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"family": "gru", "num_layers": 3},
        {"embed_dim": 0},
        {"embed_dim": 24, "tie_weights": True},
        {"embed_dim": 32, "tie_weights": True},  # embedding as wide as the model: no map
        {"layer_norm": True, "num_layers": 2},
        {"family": "transformer", "embed_dim": 32, "num_heads": 4},
        {"family": "transformer", "embed_dim": 16, "tie_weights": True, "num_layers": 2},
        {"family": "transformer", "embed_dim": 32, "positions": "learned", "context_size": 40},
    ],
)
def test_the_parameter_estimate_counts_the_built_model(fields: dict[str, Any]) -> None:
    """The estimate that refuses a model before it is allocated equals the parameters of the
    model built from it (a tied matrix counted once)."""
    config = ModelConfig(vocab_size=37, hidden_size=32, **fields)
    assert estimate_parameters(config) == count_parameters(build_model(config))


# -------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_is_valid_and_round_trips_through_json(name: str) -> None:
    preset = get_preset(name)
    assert preset.name == name and preset.description
    model = dataclasses.replace(preset.model, vocab_size=60)
    model.validate()
    preset.train.validate()
    check_compatible(model, preset.train)
    for config in (model, preset.train):
        assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config
    budgets = [preset.train.steps, preset.train.epochs, preset.train.minutes]
    assert sum(b is not None for b in budgets) == 1  # each says how long it trains


def test_get_preset_gives_fresh_copies_and_names_the_choices() -> None:
    first = get_preset("small")
    first.model.hidden_size = 7
    first.train.lr = 99.0
    again = get_preset("small")
    assert again.model.hidden_size == 256 and again.train.lr == 4e-3
    assert PRESETS["small"].model.hidden_size == 256
    assert DEFAULT_PRESET == "auto" and DEFAULT_PRESET in PRESETS
    with pytest.raises(ConfigError) as info:
        get_preset("huge")
    assert "unknown preset 'huge'" in str(info.value)
    assert all(name in str(info.value) for name in PRESETS)


def test_build_configs_routes_each_option_to_its_config() -> None:
    model, train, data = build_configs(
        "corpus.txt",
        "small",
        {"epochs": 2.0},
        {"hidden_size": 40, "lr": 0.5, "lowercase": True, "family": "gru"},
    )
    assert (model.hidden_size, model.family, model.embed_dim) == (40, "gru", 32)  # 32: small's
    assert (train.lr, train.batch_size) == (0.5, 32)
    assert (train.epochs, train.steps, train.minutes) == (2.0, None, None)  # replaces small's
    assert data.lowercase and data.source == "corpus.txt"
    _, kept, _ = build_configs("c", "small", {}, {})
    assert kept.minutes == 1.0  # no budget given: the preset's
    for name in ("source", "vocab_size", "hidden"):  # set by the run itself, or no field
        with pytest.raises(ConfigError, match=f"unknown training option '{name}'"):
            build_configs("c", "small", {}, {name: 1})


def test_resume_overrides_keeps_runtime_settings_and_names_every_other_field() -> None:
    runtime, data_dir = resume_overrides({"threads": 2, "device": "cpu", "data_dir": "/d"})
    assert runtime == {"threads": 2, "device": "cpu"} and data_dir == "/d"
    assert resume_overrides({}) == ({}, None)
    every = [
        f.name for cls in (ModelConfig, TrainConfig, DataConfig) for f in dataclasses.fields(cls)
    ]
    for name in every:  # each field but the four is refused, by the name the caller uses
        if name in ("threads", "device", "compile", "data_dir"):
            continue
        with pytest.raises(ConfigError, match=f"cannot change --{name.replace('_', '-')} when"):
            resume_overrides({name: 1, "threads": 2}, spell=lambda n: "--" + n.replace("_", "-"))
    with pytest.raises(ConfigError, match="cannot change hidden_size, lr when resuming"):
        resume_overrides({"lr": 0.1, "hidden_size": 8, "compile": True})


def test_run_config_round_trips_with_the_version_that_wrote_it() -> None:
    from chargen.version import __version__

    config = RunConfig(ModelConfig(vocab_size=7), TrainConfig(steps=3), DataConfig(source="x"))
    stored = json.loads(json.dumps(config.to_dict()))
    assert stored["chargen_version"] == __version__ and stored["format"] == "chargen-run"
    assert RunConfig.from_dict(stored) == config
