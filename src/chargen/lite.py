"""``chargen generate`` without torch: a plain request on an LSTM or GRU run, in NumPy.

Importing torch takes 1.5-2 s on a small machine, far longer than writing 400 characters. A
plain request (a prose run of an LSTM or GRU on the CPU; sampling by temperature alone, or
greedy; no stop strings, beams, novelty, constraints, clamps or engine other than auto/numpy;
text or lines output) is served here: the weights read with safetensors' NumPy reader into
``NumpyRNNStep``, the prompt read one step at a time, and the tokens drawn by the one loop
(``token_loop``) with ``numpy_draw.TemperatureDraw`` (the same inverse-CDF draw and
counter-based uniforms), so the same seed gives the same text. Only the float32 rounding differs (NumPy's log-softmax and
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
from chargen.numpy_draw import TemperatureDraw
from chargen.numpy_step import NumpyRNNStep, RNNArrays, arrays_of_file, saved_shapes
from chargen.prompt_ids import encode_prompt, start_token
from chargen.run_files import TOKENIZER, load_config, weights_file
from chargen.sampling_config import GREEDY_BELOW, SamplingConfig
from chargen.token_loop import Stream, TokenLoop
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
            path = weights_file(run, which)
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
        """``generate.generate`` for one sample of a temperature-only chain, in NumPy: the
        prompt read one step a token, then ``token_loop.TokenLoop`` with ``TemperatureDraw``."""
        assert num_samples == 1 and not stop
        ids = encode_prompt(tokenizer, prompt, unknown) or [start_token(tokenizer)]
        rows = NumpyRNNStep(self.weights, 0)
        reader = rows.fork(1)
        for token in ids[:-1]:  # the prompt, one step a token
            reader.step(np.array([token], dtype=np.int64))
        greedy = sampling.temperature < GREEDY_BELOW
        stream = Stream(TemperatureDraw(sampling.temperature, greedy), [seed], ids, length)
        loop = TokenLoop(rows)
        loop.add(stream, reader.parts())
        pieces = tokenizer.token_texts(range(tokenizer.vocab_size))
        while not stream.full:
            failed = loop.tick()
            if failed:
                raise failed[0].cause
            if on_text is not None:
                on_text(0, pieces[int(stream.last_drawn()[0])])
        tokens = stream.history[0, len(ids) :].tolist()
        sample = PlainSample(
            text="",
            seed=seed,
            tokens=tokens,
            pieces=[pieces[t] for t in tokens],
            logprobs=stream.logprobs[0].tolist(),
            entropies=stream.entropies[0].tolist(),
        )
        sample.text = "".join(sample.pieces)
        return [sample]
