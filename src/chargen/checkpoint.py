"""The run directory: everything a training run writes, and how it is read back.

Layout (every file written atomically)::

    config.json           format, version, model / train / data configs
    tokenizer.json        the vocabulary
    model.safetensors     the latest weights
    best.safetensors      the weights with the lowest validation loss so far
    trainer.safetensors   weights + optimizer + RNG + data position + carried state: one file,
                          so a resume never mixes parts of two checkpoints
    metrics.jsonl         one JSON object per evaluation / sample / epoch

Weights are read only through safetensors: nothing in a run directory is ever unpickled, and a
safetensors header is checked against the file's size and against the tensors the configured
model expects (names, dtypes, shapes) before any tensor data is read. Files chargen writes are
never written through a symbolic link: a run folder holding a link under one of its file names
is refused.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from chargen.atomic import (
    append_text,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    available_memory,
    check_writable_folder,
    loads_bounded,
    open_regular,
    read_regular,
    refuse_link_message,
)
from chargen.config import RunConfig
from chargen.errors import CheckpointError
from chargen.models import LanguageModel, build_model
from chargen.optimizers import Optimizer
from chargen.run_files import (
    BEST,
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    load_config,
    weights_file,
)
from chargen.tokenizer import Tokenizer, load_tokenizer

TRAINER = "trainer.safetensors"
METRICS = "metrics.jsonl"
RUN_FILES = (CONFIG, TOKENIZER, WEIGHTS, BEST, TRAINER, METRICS)
MAX_METRICS_BYTES = 1 << 30
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
# bytes per element of each safetensors dtype
ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
TORCH_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def check_run_dir(path: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> Path:
    """Raise CheckpointError unless ``path`` may take a run; changes nothing on disk.

    An existing run is never replaced without ``overwrite``, and ``resume`` needs a trainer state.
    """
    run = Path(path)
    if run.exists() and not run.is_dir():
        raise CheckpointError(f"{run} exists and is not a folder")
    if not overwrite:  # --overwrite removes the links themselves
        _refuse_links(run)
    if resume:
        if not (run / TRAINER).is_file():
            raise CheckpointError(
                f"{run}: nothing to resume (no {TRAINER}); start a new run without --resume"
            )
        return run
    if _holds_run(run) and not overwrite:
        raise CheckpointError(
            f"{run} already holds a run; pass --resume to continue it or --overwrite to replace it"
        )
    return run


def _holds_run(run: Path) -> bool:
    return run.is_dir() and any(os.path.lexists(run / name) for name in RUN_FILES)


def _refuse_links(run: Path) -> None:
    """CheckpointError when one of chargen's file names in ``run`` is a symbolic link."""
    for name in RUN_FILES:
        if (run / name).is_symlink():
            raise CheckpointError(refuse_link_message(run / name))


def prepare_run_dir(path: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> Path:
    """``check_run_dir``, then create the folder; with ``overwrite`` only chargen's own files go."""
    run = check_run_dir(path, resume=resume, overwrite=overwrite)
    if resume:
        remove_stale_temporaries(run)
        return run
    try:
        run.mkdir(parents=True, exist_ok=True)
        check_writable_folder(run)
        if overwrite:
            for name in RUN_FILES:
                (run / name).unlink(missing_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot write to {run}: {exc.strerror or exc}") from None
    return run


def remove_stale_temporaries(run: Path) -> list[Path]:
    """Delete half-written temporaries of chargen's files left by a killed process."""
    stale = [p for name in RUN_FILES for p in run.glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_config(run: Path, config: RunConfig) -> None:
    atomic_write_json(run / CONFIG, config.to_dict())


def save_tokenizer(run: Path, tokenizer: Tokenizer) -> None:
    tokenizer.save(run / TOKENIZER)


def unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without aliases: a tied matrix (one tensor under two names) is
    kept under its first name only, and ``model.load_state_dict`` of it restores both."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = tensor
    return out


def weights_bytes(model: torch.nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes of the model's parameters (contiguous CPU copies, aliases once)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in unique_state(model).items()}
    return st_save(tensors, metadata=metadata)


def save_weights(
    path: Path, model: torch.nn.Module, metadata: dict[str, Any] | None = None
) -> None:
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, weights_bytes(model, meta))


@dataclass(frozen=True)
class TensorSpec:
    """What one tensor of a safetensors file is: its dtype name (``F32``, ...) and shape."""

    dtype: str
    shape: tuple[int, ...]


def tensor_specs(tensors: Mapping[str, torch.Tensor]) -> dict[str, TensorSpec]:
    """The ``TensorSpec`` of each tensor (a dtype safetensors cannot name is shown as torch's)."""
    return {
        name: TensorSpec(TORCH_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape))
        for name, t in tensors.items()
    }


def read_safetensors(
    path: Path, expected: Mapping[str, TensorSpec] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; CheckpointError (one line) naming it when it
    is not a regular file, is damaged, or does not hold exactly the ``expected`` tensors.

    Every check runs on the header before a byte of tensor data is read: the header fits the
    file, each tensor's offsets match its dtype and shape and together cover the file's data
    exactly, and (given ``expected``) the names, dtypes and shapes are those expected; without
    ``expected`` the data must fit in the memory available.
    """
    try:
        with open_regular(path, CheckpointError) as handle:
            size = os.fstat(handle.fileno()).st_size
            specs, metadata = _read_header(handle, path, size)
            if expected is not None:
                check_specs(path, specs, expected)
            else:
                room = available_memory()
                if room is not None and size > room:
                    raise CheckpointError(
                        f"{path}: {size:,} bytes, more than the {room:,} bytes of memory available"
                    )
            handle.seek(0)
            raw = handle.read(size)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        tensors = st_load(raw)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}"
        ) from None
    return tensors, metadata


def _read_header(
    handle: BinaryIO, path: Path, size: int
) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    """Parse and check a safetensors header against the file size; return specs and metadata."""

    def corrupt(why: str) -> CheckpointError:
        return CheckpointError(
            f"{path}: not a valid safetensors file (truncated or corrupt?): {why}"
        )

    if size < 8:
        raise corrupt(f"{size} bytes, too short for a header")
    length = int.from_bytes(handle.read(8), "little")
    if length > min(size - 8, MAX_HEADER_BYTES):
        raise corrupt(f"its header claims {length:,} bytes, the file has {size:,}")
    try:
        header = loads_bounded(handle.read(length))
    except ValueError as exc:
        raise corrupt(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise corrupt("__metadata__ is not an object of strings")
    specs: dict[str, TensorSpec] = {}
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        spec, span = _entry(name, entry, corrupt)
        specs[name] = spec
        spans.append(span)
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise corrupt("tensor data overlaps or leaves gaps")
        end = stop
    if end != size - 8 - length:
        raise corrupt(
            f"its header describes {end:,} bytes of tensor data, the file holds {size - 8 - length:,}"
        )
    return specs, metadata


def _entry(
    name: str, entry: Any, corrupt: Callable[[str], CheckpointError]
) -> tuple[TensorSpec, tuple[int, int]]:
    """One header entry checked: a known dtype, a shape and offsets of the matching length."""

    def count(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    if not isinstance(entry, dict):
        raise corrupt(f"entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise corrupt(f"tensor {name!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(count(d) for d in shape):
        raise corrupt(f"tensor {name!r} has no valid shape")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise corrupt(f"tensor {name!r} has no valid data_offsets")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]:
        raise corrupt(f"tensor {name!r}: its offsets do not match its shape and dtype")
    return TensorSpec(dtype, tuple(shape)), (offsets[0], offsets[1])


def check_specs(
    path: Path, found: Mapping[str, TensorSpec], expected: Mapping[str, TensorSpec]
) -> None:
    """CheckpointError (one line) unless ``found`` has exactly the expected names, dtypes and
    shapes; a dtype is never converted, so float16, int64 or bool weights are refused."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the configured model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, spec in found.items():
        want = expected[name]
        if spec.dtype != want.dtype:
            raise CheckpointError(
                f"{path}: tensor {name} has dtype {spec.dtype}, the configured model needs "
                f"{want.dtype} (chargen reads weights only in the dtype it saves them)"
            )
        if spec.shape != want.shape:
            raise CheckpointError(
                f"{path}: {name} has shape {spec.shape}, the configured model needs "
                f"{want.shape} (tokenizer or config does not match the weights?)"
            )


def load_weights_into(model: torch.nn.Module, path: Path) -> dict[str, str]:
    """Copy weights from ``path`` into ``model``; CheckpointError if they do not fit it."""
    tensors, metadata = read_safetensors(path, tensor_specs(unique_state(model)))
    model.load_state_dict(tensors, strict=False)  # the header was checked against the model
    return metadata


def _load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    check_specs(path, tensor_specs(tensors), tensor_specs(unique_state(model)))
    model.load_state_dict(tensors, strict=False)  # names checked above; aliases follow


def save_trainer_state(
    run: Path,
    model: torch.nn.Module,
    optimizer: Optimizer,
    meta: dict[str, Any],
    extra: dict[str, torch.Tensor],
) -> None:
    """One atomic file with weights, optimizer state, RNG state, carried state and ``meta``."""
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().contiguous().cpu() for k, v in unique_state(model).items()
    }
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, slot in opt_state["state"].items():
        for key, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    for key, value in extra.items():
        tensors[f"extra.{key}"] = value.detach().contiguous().cpu()
    metadata = {
        "meta": json.dumps(meta),
        "optim_groups": json.dumps(opt_state["param_groups"]),
        "optim_scalars": json.dumps(scalars),
    }
    atomic_write_bytes(run / TRAINER, st_save(tensors, metadata=metadata))


@dataclass
class TrainerState:
    """What ``trainer.safetensors`` holds, split back into its parts."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: torch.Tensor
    extra: dict[str, torch.Tensor]
    meta: dict[str, Any]


def load_trainer_state(run: Path) -> TrainerState:
    path = run / TRAINER
    tensors, metadata = read_safetensors(path)
    try:
        meta = loads_bounded(metadata["meta"])
        groups = loads_bounded(metadata["optim_groups"])
        scalars = loads_bounded(metadata["optim_scalars"])
        rng = tensors["rng.torch"]
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: not a chargen trainer state") from None
    if not (isinstance(meta, dict) and isinstance(groups, list) and isinstance(scalars, dict)):
        raise CheckpointError(f"{path}: not a chargen trainer state")
    model: dict[str, torch.Tensor] = {}
    extra: dict[str, torch.Tensor] = {}
    try:
        state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in scalars.items()}
        for key, value in tensors.items():
            kind, _, rest = key.partition(".")
            if kind == "model":
                model[rest] = value
            elif kind == "extra":
                extra[rest] = value
            elif kind == "optim":
                index, _, name = rest.partition(".")
                state.setdefault(int(index), {})[name] = value
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: not a chargen trainer state") from None
    return TrainerState(model, {"state": state, "param_groups": groups}, rng, extra, meta)


def restore_model(model: torch.nn.Module, saved: TrainerState, run: Path) -> None:
    _load_state(model, saved.model, run / TRAINER)


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, flushed after each record."""

    def __init__(self, run: Path) -> None:
        self.path = run / METRICS

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (never through a symbolic link; CheckpointError when refused)."""
        append_text(self.path, json.dumps(record, ensure_ascii=False) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (a crash mid-write) is skipped."""
        if not os.path.lexists(self.path):
            return []
        text = read_regular(self.path, CheckpointError, MAX_METRICS_BYTES)
        records = []
        for line in text.decode("utf-8", "replace").splitlines():
            try:
                record = loads_bounded(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (those a resumed run will write again)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write_text(
            self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        )


def load_run(
    run_dir: str | os.PathLike[str], which: str = "best", device: str = "cpu"
) -> tuple[RunConfig, Tokenizer, LanguageModel]:
    """Config, tokenizer and model of a run; ``which`` is ``best`` or ``last`` weights.

    ``best`` falls back to the last weights when no evaluation has happened yet.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder")
    config = load_config(run)
    tokenizer = load_tokenizer(run / TOKENIZER)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CheckpointError(
            f"{run / TOKENIZER}: {tokenizer.vocab_size} symbols, but the model was built for "
            f"{config.model.vocab_size}; the tokenizer does not belong to these weights"
        )
    model = build_model(config.model)
    path = weights_file(run, which)
    load_weights_into(model, path)
    model.to(device)
    model.eval()
    return config, tokenizer, model
