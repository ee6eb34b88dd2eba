"""chargen: train character- and word-level language models on any text and generate from them.

The Python API in five lines::

    import chargen
    chargen.train("python-docs", "runs/docs", minutes=1)
    run = chargen.load("runs/docs")
    print(run.generate("The ", length=200, temperature=0.5))
"""

from __future__ import annotations

__version__ = "0.1.0"

from chargen.api import Run, load, train  # noqa: E402
from chargen.errors import ChargenError  # noqa: E402
from chargen.sampling import SamplingConfig, reweight_distribution  # noqa: E402

__all__ = [
    "ChargenError",
    "Run",
    "SamplingConfig",
    "__version__",
    "load",
    "reweight_distribution",
    "train",
]
