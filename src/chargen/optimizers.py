"""AdamW, Adam, SGD with momentum and RMSprop on torch's foreach kernels, without ``torch.optim``.

The maths and the ``state_dict`` layout are those of ``torch.optim`` (the tests check both to the
bit), so a trainer state written through ``torch.optim`` by earlier versions still resumes. The
reason to have them at all is memory: the first ``torch.optim`` optimizer imports
``torch._dynamo`` and sympy, about 70 MB of resident memory that a training run never uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch

Group = dict[str, Any]
Slot = dict[str, Any]


class Optimizer:
    """Parameter groups, per-parameter state, ``zero_grad`` and torch.optim's ``state_dict`` format.

    ``state_dict()`` is ``{"state": {index: slot}, "param_groups": [{..., "params": [index]}]}``,
    parameters numbered in group order; a slot's ``step`` is a 0-d float32 CPU tensor, as in
    torch.optim. ``load_state_dict`` takes that format back, checks group sizes and tensor
    shapes (``ValueError`` when they differ) and takes the saved hyperparameters.
    """

    hyperparameters: tuple[str, ...] = ("lr",)
    slot_tensors: tuple[str, ...] = ()
    counts_steps = True
    # torch.optim options these updates implement at one value: written into each group (so
    # torch.optim can load the state too); a saved state with another value is refused
    fixed: dict[str, Any] = {"maximize": False}
    # torch.optim options that choose kernels, not maths: written, never checked
    kernels: dict[str, Any] = {"foreach": None, "differentiable": False}

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[Group], **defaults: Any) -> None:
        self.defaults = defaults
        self.state: dict[torch.Tensor, Slot] = {}
        self.param_groups: list[Group] = []
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be an iterable of tensors or of group dicts, not a tensor")
        items = list(params)
        if not items:
            raise ValueError("the optimizer got an empty parameter list")
        # cast: params is all tensors or all group dicts, so the first item tells which
        groups = cast("list[Group]", items) if isinstance(items[0], dict) else [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: Group) -> None:
        given = group["params"]
        params = [given] if isinstance(given, torch.Tensor) else list(given)
        if not all(isinstance(p, torch.Tensor) and p.is_leaf for p in params):
            raise ValueError("the optimizer can only update leaf tensors (parameters)")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in taken for p in params):
            raise ValueError("a parameter appears more than once in the optimizer's groups")
        options = {k: v for k, v in group.items() if k != "params"}
        entry = {**self.defaults, **options, **self.fixed, **self.kernels, "params": params}
        self.param_groups.append(entry)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    # ----------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            numbers = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": numbers})
        state = {index[id(p)]: self._export(slot) for p, slot in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        groups = saved["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{len(groups)} parameter groups saved, the optimizer has {len(self.param_groups)}"
            )
        for mine, theirs in zip(self.param_groups, groups, strict=True):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    f"a saved parameter group has {len(theirs['params'])} parameters, "
                    f"the optimizer's has {len(mine['params'])}"
                )
            for key, value in self.fixed.items():
                if theirs.get(key, value) != value:
                    raise ValueError(
                        f"the saved state was made with {key}={theirs[key]!r}; "
                        f"{type(self).__name__} here runs with {key}={value!r}"
                    )
        state: dict[torch.Tensor, Slot] = {}
        for mine, theirs in zip(self.param_groups, groups, strict=True):
            for p, number in zip(mine["params"], theirs["params"], strict=True):
                slot = saved["state"].get(number)
                if slot is not None:  # no slot: the parameter had no gradient yet
                    state[p] = self._import(p, slot, number)
        for mine, theirs in zip(self.param_groups, groups, strict=True):
            for key in self.hyperparameters:
                if key in theirs:
                    value = theirs[key]
                    mine[key] = tuple(value) if isinstance(value, list) else value
        self.state = state

    def _export(self, slot: Slot) -> Slot:
        out = dict(slot)
        if "step" in out:
            out["step"] = torch.tensor(float(out["step"]), dtype=torch.float32)
        return out

    def _import(self, p: torch.Tensor, slot: Slot, number: int) -> Slot:
        out: Slot = {}
        if self.counts_steps:
            if "step" not in slot:
                raise ValueError(f"the saved state of parameter {number} has no step")
            out["step"] = int(float(slot["step"]))
        for key in self.slot_tensors:
            value = slot.get(key)
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"the saved state of parameter {number} has no tensor {key!r}")
            if value.shape != p.shape:
                raise ValueError(
                    f"saved {key} of parameter {number} has shape {tuple(value.shape)}, "
                    f"the parameter {tuple(p.shape)}"
                )
            out[key] = value.detach().to(device=p.device, dtype=p.dtype).clone()
        return out

    def _gradients(self, group: Group) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The group's parameters that have a gradient, and those gradients."""
        params = [p for p in group["params"] if p.grad is not None]
        grads = []
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not take sparse gradients")
            grads.append(p.grad)
        return params, grads

    def _slots(self, params: list[torch.Tensor]) -> list[Slot]:
        """Each parameter's state, made on first use (zeros, step 0)."""
        slots = []
        for p in params:
            slot = self.state.get(p)
            if slot is None:
                slot = {"step": 0} if self.counts_steps else {}
                for key in self.slot_tensors:
                    slot[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.state[p] = slot
            if self.counts_steps:
                slot["step"] += 1
            slots.append(slot)
        return slots

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            params, grads = self._gradients(group)
            if params:
                self._update(group, params, grads)

    def _update(self, group: Group, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError


def _with_l2(
    grads: list[torch.Tensor], params: list[torch.Tensor], decay: float
) -> list[torch.Tensor]:
    """L2 weight decay folded into the gradients, g + λp (new tensors); the gradients if λ = 0."""
    return list(torch._foreach_add(grads, params, alpha=decay)) if decay != 0 else grads


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), torch.optim.AdamW's update.

    p ← p(1 − lr·λ);  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
    p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε).  With ``decoupled=False`` (Adam) the decay
    is L2 instead: g ← g + λp.
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    slot_tensors = ("exp_avg", "exp_avg_sq")
    fixed = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": True}
    kernels = {"foreach": None, "capturable": False, "differentiable": False, "fused": None}

    @property
    def decoupled(self) -> bool:
        return bool(self.fixed["decoupled_weight_decay"])

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[Group],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, group: Group, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        slots = self._slots(params)
        lr, (beta1, beta2), eps, decay = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        if not self.decoupled:
            grads = _with_l2(grads, params, decay)
        elif decay != 0:
            torch._foreach_mul_(params, 1 - lr * decay)
        exp_avgs = [s["exp_avg"] for s in slots]
        exp_avg_sqs = [s["exp_avg_sq"] for s in slots]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        steps = [s["step"] for s in slots]
        bias2_sqrt = [(1 - beta2**t) ** 0.5 for t in steps]
        minus_step_size = [-(lr / (1 - beta1**t)) for t in steps]
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias2_sqrt)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denominators, minus_step_size)


class Adam(AdamW):
    """Adam (Kingma & Ba) with L2 weight decay, torch.optim.Adam's update."""

    fixed = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[Group],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class SGD(Optimizer):
    """SGD with heavy-ball momentum, torch.optim.SGD's update (no dampening, not Nesterov).

    g ← g + λp;  b ← g on the first step, else b ← μb + g;  p ← p − lr·b.
    """

    hyperparameters = ("lr", "momentum", "weight_decay")
    slot_tensors = ("momentum_buffer",)
    counts_steps = False
    fixed = {"dampening": 0, "nesterov": False, "maximize": False}
    kernels = {"foreach": None, "differentiable": False, "fused": None}

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[Group],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _import(self, p: torch.Tensor, slot: Slot, number: int) -> Slot:
        if slot.get("momentum_buffer") is None:  # torch.optim.SGD saves None without momentum
            return {}
        return super()._import(p, slot, number)

    def _update(self, group: Group, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        grads = _with_l2(grads, params, group["weight_decay"])
        if momentum != 0:
            updates = []
            for p, g in zip(params, grads, strict=True):
                slot = self.state.setdefault(p, {})
                buffer = slot.get("momentum_buffer")
                if buffer is None:
                    buffer = slot["momentum_buffer"] = g.detach().clone()
                else:
                    buffer.mul_(momentum).add_(g)
                updates.append(buffer)
            grads = updates
        torch._foreach_add_(params, grads, alpha=-lr)


class RMSprop(Optimizer):
    """RMSprop (Hinton), torch.optim.RMSprop's update without momentum or centring.

    g ← g + λp;  s ← αs + (1 − α)g²;  p ← p − lr · g / (√s + ε).
    """

    hyperparameters = ("lr", "alpha", "eps", "weight_decay")
    slot_tensors = ("square_avg",)
    fixed = {"momentum": 0, "centered": False, "maximize": False}
    kernels = {"capturable": False, "foreach": None, "differentiable": False}

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[Group],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)

    def _update(self, group: Group, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        slots = self._slots(params)
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        grads = _with_l2(grads, params, group["weight_decay"])
        squares = [s["square_avg"] for s in slots]
        torch._foreach_mul_(squares, alpha)
        torch._foreach_addcmul_(squares, grads, grads, 1 - alpha)
        denominators = torch._foreach_sqrt(squares)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, grads, denominators, -lr)
