"""The samplers people use today, with llama.cpp's names: DRY, XTC, top-n-sigma, mirostat v2
and dynamic temperature (to be written).

``rules(cfg)`` returns the rules ``cfg`` switches on; ``chain.SamplingChain`` merges them into
the documented order of stages.
"""

from __future__ import annotations

from chargen.sampling import LogitsProcessor, SamplingConfig


def rules(cfg: SamplingConfig) -> list[LogitsProcessor]:
    """The rules of this module that ``cfg`` switches on (none yet)."""
    return []
