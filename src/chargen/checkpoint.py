"""The run directory: everything a training run writes, and how it is read back.

Layout (every file written atomically)::

    config.json           format, version, model / train / data configs
    tokenizer.json        the vocabulary
    model.safetensors     the latest weights
    best.safetensors      the weights with the lowest validation loss so far
    trainer.safetensors   weights + optimizer + RNG + data position + carried state: one file,
                          so a resume never mixes parts of two checkpoints
    metrics.jsonl         one JSON object per evaluation / sample / epoch

Weights are read only through safetensors: nothing in a run directory is ever unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from chargen import __version__
from chargen.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.errors import ChargenError, CheckpointError
from chargen.models import LanguageModel, build_model
from chargen.optimizers import Optimizer
from chargen.tokenizer import Tokenizer, load_tokenizer

RUN_FORMAT = "chargen-run"
RUN_VERSION = 1
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
TRAINER = "trainer.safetensors"
METRICS = "metrics.jsonl"
RUN_FILES = (CONFIG, TOKENIZER, WEIGHTS, BEST, TRAINER, METRICS)


@dataclass
class RunConfig:
    """The three configurations of a run, as stored in ``config.json``."""

    model: ModelConfig
    train: TrainConfig
    data: DataConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "chargen_version": __version__,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = CONFIG) -> RunConfig:
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
            )
        except KeyError as exc:
            raise CheckpointError(f"{where}: missing section {exc.args[0]!r}") from None
        except (ChargenError, TypeError) as exc:
            raise CheckpointError(f"{where}: {exc}") from None


def check_run_dir(path: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> Path:
    """Raise CheckpointError unless ``path`` may take a run; changes nothing on disk.

    An existing run is never replaced without ``overwrite``, and ``resume`` needs a trainer state.
    """
    run = Path(path)
    if run.exists() and not run.is_dir():
        raise CheckpointError(f"{run} exists and is not a folder")
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
    return run.is_dir() and any((run / name).exists() for name in RUN_FILES)


def prepare_run_dir(path: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> Path:
    """``check_run_dir``, then create the folder; with ``overwrite`` only chargen's own files go."""
    run = check_run_dir(path, resume=resume, overwrite=overwrite)
    if resume:
        remove_stale_temporaries(run)
        return run
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".chargen-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"cannot write to {run}: {exc.strerror or exc}") from None
    if overwrite:
        for name in RUN_FILES:
            (run / name).unlink(missing_ok=True)
    return run


def remove_stale_temporaries(run: Path) -> list[Path]:
    """Delete half-written temporaries of chargen's files left by a killed process."""
    stale = [p for name in RUN_FILES for p in run.glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_config(run: Path, config: RunConfig) -> None:
    atomic_write_json(run / CONFIG, config.to_dict())


def load_config(run: Path) -> RunConfig:
    return RunConfig.from_dict(_read_json(run / CONFIG), str(run / CONFIG))


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


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; CheckpointError naming it when unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}"
        ) from None
    return tensors, header.get("__metadata__") or {}


def load_weights_into(model: torch.nn.Module, path: Path) -> dict[str, str]:
    """Copy weights from ``path`` into ``model``; CheckpointError if they do not fit it."""
    tensors, metadata = read_safetensors(path)
    _load_state(model, tensors, path)
    return metadata


def _load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = unique_state(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the configured model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, the configured model needs "
                f"{tuple(expected[name].shape)} (tokenizer or config does not match the weights?)"
            )
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
        meta = json.loads(metadata["meta"])
        groups = json.loads(metadata["optim_groups"])
        scalars = json.loads(metadata["optim_scalars"])
        rng = tensors["rng.torch"]
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a chargen trainer state") from None
    model: dict[str, torch.Tensor] = {}
    extra: dict[str, torch.Tensor] = {}
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
    return TrainerState(model, {"state": state, "param_groups": groups}, rng, extra, meta)


def restore_model(model: torch.nn.Module, saved: TrainerState, run: Path) -> None:
    _load_state(model, saved.model, run / TRAINER)


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, flushed after each record."""

    def __init__(self, run: Path) -> None:
        self.path = run / METRICS

    def append(self, record: dict[str, Any]) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
        except OSError as exc:
            raise CheckpointError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (a crash mid-write) is skipped."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
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
    path = run / (BEST if which == "best" and (run / BEST).exists() else WEIGHTS)
    load_weights_into(model, path)
    model.to(device)
    model.eval()
    return config, tokenizer, model


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found (is this a chargen run folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable or corrupt JSON ({exc})") from None
