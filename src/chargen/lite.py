"""``chargen generate`` without torch: a plain request on an LSTM or GRU run, in NumPy.

Importing torch takes 1.5-2 s on a small machine, far longer than writing 400 characters. A
plain request (a prose run of an LSTM or GRU on the CPU; sampling by temperature alone, or
greedy; no stop strings, beams, novelty, constraints, clamps or engine other than auto/numpy;
text or lines output) is served here: the weights read with safetensors' NumPy reader into
``NumpyRNNStep``, the prompt read one step at a time, and each token drawn as
``numpy_generation`` draws it (``numpy_draw.draw``, the same counter-based uniforms), so the
same seed gives the same text. Only the float32 rounding differs (NumPy's log-softmax and
matrix products, not torch's): a token flips only when its uniform falls within a rounding
error of a boundary of the CDF. A run folder with anything unexpected goes the torch way,
whose checks give the one-line error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load

from chargen.atomic import read_regular
from chargen.errors import ChargenError, CheckpointError
from chargen.numpy_draw import draw, log_softmax, non_finite_error, usable
from chargen.numpy_step import NumpyRNNStep, RNNArrays, arrays_of_file, saved_shapes
from chargen.prompt_ids import encode_prompt, start_token
from chargen.rng import UniformDraws
from chargen.run_files import BEST, TOKENIZER, WEIGHTS, load_config
from chargen.sampling_config import GREEDY_BELOW, SamplingConfig
from chargen.tokenizer import Tokenizer, load_tokenizer

HEADER_BYTES = 1 << 20  # a safetensors header of an LSTM/GRU run is a few KB


@dataclass
class PlainSample:
    """What ``generate`` returns of a sample, for the command line's printers."""

    text: str
    seed: int
    tokens: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)


@dataclass
class PlainRun:
    """An LSTM or GRU run's tokenizer and NumPy weights."""

    tokenizer: Tokenizer
    weights: RNNArrays

    @classmethod
    def open(cls, run_dir: str, which: str = "best") -> PlainRun | None:
        """The run, or None when it is anything but a readable float32 LSTM/GRU prose run
        (the torch path then loads it, with its checks and messages)."""
        try:
            run = Path(run_dir)
            config = load_config(run)  # every section checked, as the torch path checks it
            model = config.model
            if model.family not in ("lstm", "gru") or config.data.lines:
                return None
            tokenizer = load_tokenizer(run / TOKENIZER)
            if tokenizer.vocab_size != model.vocab_size:
                return None
            path = run / (BEST if which == "best" and (run / BEST).exists() else WEIGHTS)
            # a regular file (never a FIFO that would block) no larger than its tensors imply
            size = 4 * sum(math.prod(shape) for shape in saved_shapes(model).values())
            data = read_regular(path, CheckpointError, size + HEADER_BYTES)
            weights = arrays_of_file(load(data), model)
        except (ChargenError, SafetensorError, OSError, ValueError, KeyError, TypeError):
            return None
        return cls(tokenizer, weights) if weights is not None else None

    def generate(
        self,
        _model: object,
        tokenizer: Tokenizer,
        prompt: str = "",
        *,
        length: int,
        sampling: SamplingConfig,
        num_samples: int = 1,
        seed: int = 0,
        stop: Sequence[str] = (),
        unknown: str = "warn",
        on_text: Callable[[int, str], None] | None = None,
        engine: str = "auto",
    ) -> list[PlainSample]:
        """``generate.generate`` for one sample of a temperature-only chain, in NumPy."""
        assert num_samples == 1 and not stop
        ids = encode_prompt(tokenizer, prompt, unknown) or [start_token(tokenizer)]
        step = NumpyRNNStep(self.weights, 1)
        for token in ids[:-1]:  # the prompt, one step a token
            step.step(np.array([token]))
        draws = UniformDraws([seed])
        pieces = tokenizer.token_texts(range(tokenizer.vocab_size))
        sample = PlainSample(text="", seed=seed)
        last = ids[-1]
        temperature = np.float32(sampling.temperature)
        for t in range(length):
            logits = step.step(np.array([last]))
            if not usable(logits):
                raise non_finite_error(t)
            if sampling.temperature < GREEDY_BELOW:
                last, lp, ent = int(logits[0].argmax()), 0.0, 0.0
            else:
                z = logits - logits.max(axis=1, keepdims=True)
                if sampling.temperature != 1.0:
                    z /= temperature
                picked, chosen, entropy = draw(log_softmax(z), draws(t))
                last, lp, ent = int(picked[0]), float(chosen[0]), float(entropy[0])
            sample.tokens.append(last)
            sample.pieces.append(pieces[last])
            sample.logprobs.append(lp)
            sample.entropies.append(ent)
            if on_text is not None:
                on_text(0, pieces[last])
        sample.text = "".join(sample.pieces)
        return [sample]
