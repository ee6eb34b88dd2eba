"""chargen's optimizers equal torch.optim to the bit, share its state_dict format, and load it."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from chargen import checkpoint as ckpt
from chargen import optimizers

Factory = Callable[[list], object]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.ModuleDict(
        {
            "embed": torch.nn.Embedding(20, 8),
            "rnn": torch.nn.LSTM(8, 16, 2, batch_first=True),
            "head": torch.nn.Linear(16, 20),
        }
    )


def _groups(model: torch.nn.Module) -> list[dict]:
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


# (name, torch.optim factory, chargen factory) with the settings train.make_optimizer uses
PAIRS: list[tuple[str, Factory, Factory]] = [
    (
        "adamw",
        lambda g: torch.optim.AdamW(g, lr=1e-2, betas=(0.9, 0.99)),
        lambda g: optimizers.AdamW(g, lr=1e-2, betas=(0.9, 0.99)),
    ),
    (
        "adam",
        lambda g: torch.optim.Adam(g, lr=1e-2, weight_decay=0.05),
        lambda g: optimizers.Adam(g, lr=1e-2, weight_decay=0.05),
    ),
    (
        "sgd",
        lambda g: torch.optim.SGD(g, lr=1e-2, momentum=0.9, weight_decay=0.01),
        lambda g: optimizers.SGD(g, lr=1e-2, momentum=0.9, weight_decay=0.01),
    ),
    (
        "rmsprop",
        lambda g: torch.optim.RMSprop(g, lr=1e-2, alpha=0.9, eps=1e-7),
        lambda g: optimizers.RMSprop(g, lr=1e-2, alpha=0.9, eps=1e-7),
    ),
]
IDS = [name for name, _, _ in PAIRS]


def _steps(model: torch.nn.Module, optimizer, count: int, first: int = 0) -> None:
    """``count`` steps on fixed data, the learning rate changed every step as the trainer does."""
    generator = torch.Generator().manual_seed(1)
    for step in range(first + count):
        ids = torch.randint(0, 20, (4, 7), generator=generator)
        if step < first:
            continue
        optimizer.zero_grad(set_to_none=True)
        out, _ = model["rnn"](model["embed"](ids))
        loss = torch.nn.functional.cross_entropy(
            model["head"](out).reshape(-1, 20), ids.roll(-1, 1).reshape(-1)
        )
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * 0.8**step
        optimizer.step()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(("name", "reference", "ours"), PAIRS, ids=IDS)
def test_updates_equal_torch_optim_to_the_bit(name: str, reference, ours) -> None:
    a, b = _model(), _model()
    groups = name in ("adamw", "adam")
    opt_a = reference(_groups(a) if groups else list(a.parameters()))
    opt_b = ours(_groups(b) if groups else list(b.parameters()))
    _steps(a, opt_a, 6)
    _steps(b, opt_b, 6)
    assert _same_weights(a, b)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert [g["params"] for g in sa["param_groups"]] == [g["params"] for g in sb["param_groups"]]
    assert sa["state"].keys() == sb["state"].keys()
    for index, slot in sa["state"].items():
        assert slot.keys() == sb["state"][index].keys()
        for key, value in slot.items():
            assert torch.equal(value, sb["state"][index][key]), (index, key)
            assert value.dtype == sb["state"][index][key].dtype


@pytest.mark.parametrize(("name", "reference", "ours"), PAIRS, ids=IDS)
def test_state_crosses_both_ways_and_training_goes_on_equal(name: str, reference, ours) -> None:
    groups = name in ("adamw", "adam")
    make = (lambda m: _groups(m)) if groups else (lambda m: list(m.parameters()))
    torch_model, our_model = _model(), _model()
    torch_opt, our_opt = reference(make(torch_model)), ours(make(our_model))
    _steps(torch_model, torch_opt, 3)
    _steps(our_model, our_opt, 3)
    # swap: each optimizer family continues from the other's saved state
    continued_ours, continued_torch = _model(), _model()
    continued_ours.load_state_dict(torch_model.state_dict())
    continued_torch.load_state_dict(our_model.state_dict())
    ours_from_torch = ours(make(continued_ours))
    ours_from_torch.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    torch_from_ours = reference(make(continued_torch))
    torch_from_ours.load_state_dict(copy.deepcopy(our_opt.state_dict()))
    _steps(torch_model, torch_opt, 3, first=3)
    _steps(continued_ours, ours_from_torch, 3, first=3)
    _steps(continued_torch, torch_from_ours, 3, first=3)
    assert _same_weights(torch_model, continued_ours)
    assert _same_weights(torch_model, continued_torch)


def test_a_trainer_state_saved_through_torch_optim_resumes(tmp_path: Path) -> None:
    """Runs saved before chargen had its own optimizers hold torch.optim.AdamW's state."""
    reference_model, old_model = _model(), _model()
    reference = optimizers.AdamW(_groups(reference_model), lr=1e-2, betas=(0.9, 0.99))
    old = torch.optim.AdamW(_groups(old_model), lr=1e-2, betas=(0.9, 0.99))
    _steps(reference_model, reference, 4)
    _steps(old_model, old, 4)
    ckpt.save_trainer_state(tmp_path, old_model, old, {"step": 4}, {})
    saved = ckpt.load_trainer_state(tmp_path)
    resumed_model = _model()
    resumed_model.load_state_dict(saved.model)
    resumed = optimizers.AdamW(_groups(resumed_model), lr=1e-2, betas=(0.9, 0.99))
    resumed.load_state_dict(saved.optimizer)
    _steps(reference_model, reference, 3, first=4)
    _steps(resumed_model, resumed, 3, first=4)
    assert _same_weights(reference_model, resumed_model)


def test_load_takes_the_saved_hyperparameters() -> None:
    model = _model()
    saved = optimizers.AdamW(_groups(model), lr=3e-3, betas=(0.8, 0.95), eps=1e-6)
    _steps(model, saved, 1)
    state = saved.state_dict()
    state["param_groups"][0]["betas"] = [0.8, 0.95]  # as JSON gives it back
    fresh = optimizers.AdamW(_groups(_model()))
    fresh.load_state_dict(state)
    group = fresh.param_groups[0]
    assert group["betas"] == (0.8, 0.95) and group["eps"] == 1e-6 and group["weight_decay"] == 0.1
    assert fresh.param_groups[1]["weight_decay"] == 0.0


def _saved_adamw() -> dict:
    model = _model()
    opt = optimizers.AdamW(_groups(model))
    _steps(model, opt, 1)
    return opt.state_dict()


def test_load_refuses_state_that_does_not_fit() -> None:
    opt = optimizers.AdamW(_groups(_model()))
    one_group = optimizers.AdamW(_model().parameters())
    with pytest.raises(ValueError, match="2 parameter groups saved, the optimizer has 1"):
        one_group.load_state_dict(_saved_adamw())
    fewer = _saved_adamw()
    fewer["param_groups"][0]["params"] = fewer["param_groups"][0]["params"][:-1]
    with pytest.raises(ValueError, match="parameters"):
        opt.load_state_dict(fewer)
    wrong_shape = _saved_adamw()
    wrong_shape["state"][0]["exp_avg"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"exp_avg of parameter 0 has shape \(3, 3\)"):
        opt.load_state_dict(wrong_shape)
    missing = _saved_adamw()
    del missing["state"][1]["exp_avg_sq"]
    with pytest.raises(ValueError, match="no tensor 'exp_avg_sq'"):
        opt.load_state_dict(missing)
    nesterov = optimizers.SGD(_model().parameters(), momentum=0.9).state_dict()
    nesterov["param_groups"][0]["nesterov"] = True
    with pytest.raises(ValueError, match="nesterov=True"):
        optimizers.SGD(_model().parameters(), momentum=0.9).load_state_dict(nesterov)
    adam = optimizers.Adam(_groups(_model())).state_dict()
    with pytest.raises(ValueError, match="decoupled_weight_decay=False"):
        opt.load_state_dict(adam)
    assert opt.state_dict()["state"] == {}  # a refused load changes nothing


def test_parameters_without_gradients_are_left_alone() -> None:
    model = _model()
    opt = optimizers.AdamW(model.parameters(), lr=0.1)
    head_before = model["head"].weight.detach().clone()
    out, _ = model["rnn"](model["embed"](torch.tensor([[1, 2, 3]])))
    out.sum().backward()
    opt.step()
    assert torch.equal(model["head"].weight, head_before)
    assert model["head"].weight not in opt.state and model["embed"].weight in opt.state
    opt.zero_grad(set_to_none=False)
    assert model["embed"].weight.grad is not None and not model["embed"].weight.grad.any()
    opt.zero_grad()
    assert model["embed"].weight.grad is None


def test_bad_parameter_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        optimizers.SGD([])
    weight = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="more than once"):
        optimizers.SGD([{"params": [weight]}, {"params": [weight]}])
    with pytest.raises(TypeError, match="not a tensor"):
        optimizers.SGD(weight)
    with pytest.raises(ValueError, match="leaf"):
        optimizers.SGD([weight * 2])
    assert optimizers.SGD([{"params": weight}]).param_groups[0]["params"] == [weight]


def test_training_never_imports_torch_dynamo(tmp_path: Path) -> None:
    """The memory claim: torch.optim's first use pulls in torch._dynamo and sympy (~70 MB)."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    code = (
        "import sys, chargen\n"
        f"chargen.train({str(corpus)!r}, {str(tmp_path / 'run')!r}, steps=3, hidden_size=16,"
        " embed_dim=8, batch_size=4, seq_len=16, sample_length=10, eval_every=2)\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
