"""The plain path (``chargen.lite``): a run's saved weights read as NumPy arrays draw the same
tokens as the torch model's own NumPy engine, for every shape an LSTM/GRU run can take; and
anything it does not read goes the torch way (``PlainRun.open`` is None)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chargen.checkpoint import RunConfig, save_config, save_tokenizer, save_weights
from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.generate import generate
from chargen.lite import PlainRun
from chargen.models import build_model
from chargen.sampling import SamplingConfig
from chargen.tokenizer import CharTokenizer
from tests.conftest import make_text

TEXT = make_text(3_000, seed=4)
TOKENIZER = CharTokenizer.build(TEXT)


def save_run(folder: Path, **model: object) -> torch.nn.Module:
    torch.manual_seed(1)
    config = ModelConfig(vocab_size=TOKENIZER.vocab_size, **model).validate()  # type: ignore[arg-type]
    net = build_model(config).eval()
    folder.mkdir()
    save_config(folder, RunConfig(config, TrainConfig(), DataConfig()))
    save_tokenizer(folder, TOKENIZER)
    save_weights(folder / "model.safetensors", net)
    return net


SHAPES = [
    {"family": "lstm", "embed_dim": 8, "hidden_size": 16, "num_layers": 1},
    {"family": "lstm", "embed_dim": 0, "hidden_size": 12, "num_layers": 3},
    {"family": "gru", "embed_dim": 6, "hidden_size": 10, "num_layers": 2, "layer_norm": True},
    {"family": "lstm", "embed_dim": 8, "hidden_size": 16, "num_layers": 2, "tie_weights": True},
    {"family": "gru", "embed_dim": 16, "hidden_size": 16, "num_layers": 1, "tie_weights": True},
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_the_plain_path_draws_what_the_numpy_engine_draws(
    tmp_path: Path, shape: dict, temperature: float
) -> None:
    net = save_run(tmp_path / "run", **shape)
    plain = PlainRun.open(str(tmp_path / "run"), "best")
    assert plain is not None
    cfg = SamplingConfig(temperature=temperature)
    for seed in (0, 5):
        (mine,) = plain.generate(None, TOKENIZER, "the c", length=120, sampling=cfg, seed=seed)
        (theirs,) = generate(net, TOKENIZER, "the c", length=120, sampling=cfg, seed=seed)
        assert mine.tokens == theirs.tokens
        assert mine.logprobs == pytest.approx(theirs.logprobs, abs=1e-4)
        assert mine.entropies == pytest.approx(theirs.entropies, abs=1e-4)


def test_what_it_does_not_read_goes_the_torch_way(tmp_path: Path) -> None:
    save_run(tmp_path / "tf", family="transformer", hidden_size=16, num_heads=2, embed_dim=16)
    assert PlainRun.open(str(tmp_path / "tf")) is None  # not an LSTM/GRU
    save_run(tmp_path / "lines", family="lstm", hidden_size=8, embed_dim=4)
    raw = json.loads((tmp_path / "lines" / "config.json").read_text())
    raw["data"]["lines"] = True
    (tmp_path / "lines" / "config.json").write_text(json.dumps(raw))
    assert PlainRun.open(str(tmp_path / "lines")) is None  # items: the torch path's own loop
    save_run(tmp_path / "extra", family="lstm", hidden_size=8, embed_dim=4)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tmp_path / "extra" / "model.safetensors"))
    tensors["stray"] = tensors["head.bias"]
    save_file(tensors, str(tmp_path / "extra" / "model.safetensors"))
    assert PlainRun.open(str(tmp_path / "extra")) is None  # a tensor no model has
    assert PlainRun.open(str(tmp_path / "missing")) is None
