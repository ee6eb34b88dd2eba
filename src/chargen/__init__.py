"""chargen: train character- and word-level language models on any text and generate from them.

The Python API in five lines::

    import chargen
    chargen.train("python-docs", "runs/docs", minutes=1)
    run = chargen.load("runs/docs")
    print(run.generate("The ", length=200, temperature=0.5))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chargen.errors import ChargenError
from chargen.version import __version__

if TYPE_CHECKING:
    from chargen.api import Run, load, resume, train
    from chargen.sampling import SamplingConfig, reweight_distribution

# what each public name is imported from, on first use: ``import chargen`` (and so the command
# line's ``--help``) does not import torch
_LAZY = {
    "Run": "chargen.api",
    "load": "chargen.api",
    "resume": "chargen.api",
    "train": "chargen.api",
    "SamplingConfig": "chargen.sampling_config",
    "reweight_distribution": "chargen.sampling",
}


def __getattr__(name: str) -> Any:
    """PEP 562: the API's names, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'chargen' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ChargenError",
    "Run",
    "SamplingConfig",
    "__version__",
    "load",
    "resume",
    "reweight_distribution",
    "train",
]
