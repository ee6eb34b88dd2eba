"""Where and how a step runs: device, precision, compilation, oneDNN row slices, and signals."""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch

from chargen.distributed import World
from chargen.errors import TrainingError
from chargen.models import LanguageModel, State

# glibc's largest dynamic mmap threshold: a bigger block is mapped afresh (and its pages zeroed)
# on every step instead of being reused
WORKSPACE_BUDGET = 32 * 2**20
# thinner slices lose more to narrow matmuls than they save (LSTM 1024: x0.7 at 8 rows)
MIN_SLICE_ROWS = 16


def row_chunks(model: LanguageModel, rows: int, length: int, device: torch.device) -> int:
    """How many row slices a training batch is run in, so oneDNN's LSTM workspace fits the budget.

    On the CPU that workspace holds about 15.4 x rows x length x hidden float32 values per layer
    (measured, torch 2.x). Slices give the same gradient (each slice's mean loss weighted by its
    share of the rows) in less memory and faster (LSTM 512, 32 x 64: x1.1), but only when slices
    of at least ``MIN_SLICE_ROWS`` rows fit the budget: slices still above it, or thinner ones,
    ran slower (LSTM 1024, 32 x 64 in 2 slices: x0.8-0.95). 1 on other devices and families.
    """
    config = model.config
    if device.type != "cpu" or config.family != "lstm" or not torch.backends.mkldnn.is_available():
        return 1
    workspace = 15.4 * 4 * rows * length * config.hidden_size * config.num_layers
    needed = math.ceil(workspace / WORKSPACE_BUDGET)
    return needed if 1 < needed <= rows // MIN_SLICE_ROWS else 1


def row_slices(rows: int, chunks: int) -> list[slice]:
    """``rows`` cut into ``chunks`` contiguous slices whose sizes differ by at most one."""
    bounds = [round(i * rows / chunks) for i in range(chunks + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def slice_state(state: State | None, part: slice) -> State | None:
    """Rows ``part`` of a carried (layers, B, hidden) state, cut from its autograd history."""
    return None if state is None else tuple(s[:, part].detach() for s in state)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere.

    Native: a CUDA device that supports bf16, or a CPU with AVX-512 BF16 or AMX and oneDNN.
    There bf16 autocast trained the default preset 1.3-1.45x more steps per second on 2 cores
    (matmuls and oneDNN's LSTM in bf16; weights, optimizer state and the loss stay fp32), and
    reached a lower validation loss at equal time (benchmarks/RESULTS.md).
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch >= 2.3
    native = any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return (
        "bf16"
        if device.type == "cpu" and native and torch.backends.mkldnn.is_available()
        else "fp32"
    )


def compile_for_training(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(net)`` (inductor); on the CPU first check that a C++ compiler is there."""
    if device.type == "cpu":
        compiler = os.environ.get("CXX") or "c++"
        if shutil.which(compiler) is None and shutil.which("g++") is None:
            raise TrainingError(
                f"--compile on the CPU needs a C++ compiler ({compiler} or g++), none is on PATH; "
                "install one or leave out --compile"
            )
    return cast(torch.nn.Module, torch.compile(net))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: no CUDA device is available; use --device cpu")
    return torch.device(name)


def run_device(name: str, world: World) -> torch.device:
    """The device a rank trains on: ``name`` resolved, a CUDA rank on its local GPU."""
    device = resolve_device(name)
    return (
        torch.device("cuda", world.local_rank)
        if device.type == "cuda" and world.enabled
        else device
    )


class StopSignals:
    """Turns SIGINT / SIGTERM into a flag the loop checks after each step; a second SIGINT aborts."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self.signum is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signum = signum

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
