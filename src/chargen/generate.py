"""Incremental generation: the model state is carried, so each new token costs one model step.

The prompt is read once; then ``token_loop.TokenLoop`` (the one loop, which the server's
batcher and the plain path share) runs the last token through the model, the logits through
the sampling chain and draws the next token by inverse CDF from a per-sample counter-based
uniform (``rng.uniforms``). Sample ``i``
uses seed ``seed + i``, so K samples drawn together equal K samples drawn one at a time.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from chargen import constraints, numpy_generation
from chargen.beam import beam_search
from chargen.chain import SamplingChain
from chargen.clamp import Clamps
from chargen.errors import ConfigError, GenerationError
from chargen.lines import BOUNDARY
from chargen.models import (
    LanguageModel,
    State,
    Stepper,
    build_stepper,
)
from chargen.models.stepper import FusedStepper, TorchRows
from chargen.numpy_step import NumpyRNNStep, one_blas_thread
from chargen.prompt_ids import (
    MAX_LENGTH,
    MAX_SAMPLES,
    check_request,
    encode_prompt,
    start_token,
    token_strings,
)
from chargen.sampling import SamplingConfig
from chargen.token_loop import RowStepper, Stream, TokenLoop
from chargen.tokenizer import Tokenizer

__all__ = [
    "MAX_LENGTH",
    "MAX_SAMPLES",
    "Sample",
    "beam_generate",
    "check_request",
    "encode_prompt",
    "generate",
    "read_prompt",
    "start_token",
    "token_strings",
]

ENGINES = ("auto", "numpy", "torch")

TokenCallback = Callable[[int, str], None]


@dataclass
class Sample:
    """One generated continuation (the prompt excluded) with per-token details."""

    text: str
    seed: int
    tokens: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # each token as text, before a stop cut
    logprobs: list[float] = field(default_factory=list)  # log p of each token as drawn (nats)
    entropies: list[float] = field(default_factory=list)  # entropy of each draw's distribution
    stop: str | None = None  # the stop sequence that ended the sample, if any
    stop_reason: str = "length"  # length | stop (a stop sequence) | regex (a complete match)
    matched: bool | None = None  # with --regex: whether the text matches it in full


class StopWatcher:
    """Finds stop sequences in a growing text and says how much of it is safe to emit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]

    def find(self, text: str, since: int) -> tuple[int, str] | None:
        """Earliest (position, stop) of a stop sequence that ends at or after ``since``."""
        best: tuple[int, str] | None = None
        for stop in self.stops:
            pos = text.find(stop, max(0, since - len(stop) + 1))
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, stop)
        return best

    def safe_end(self, text: str) -> int:
        """Length of the prefix of ``text`` that cannot be the start of a stop sequence."""
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:k]):
                    hold = k
                    break
        return len(text) - hold


@torch.inference_mode()
def generate(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str = "",
    *,
    length: int = 400,
    sampling: SamplingConfig | None = None,
    num_samples: int = 1,
    seed: int = 0,
    stop: Sequence[str] = (),
    unknown: str = "warn",
    on_text: TokenCallback | None = None,
    engine: str = "auto",
) -> list[Sample]:
    """Draw ``num_samples`` continuations of ``prompt`` of up to ``length`` tokens each.

    ``on_text(row, text)`` receives each sample's text as it is made (held back only while it
    could be the start of a stop sequence). Sample ``row`` uses seed ``seed + row``.
    ``engine``: ``numpy`` (LSTM/GRU on the CPU, see ``numpy_generation``), ``torch`` (any
    model, any device) or ``auto`` (numpy where it applies); both give the same tokens.
    """
    sampling = (sampling or SamplingConfig()).validate()
    check_request(length, num_samples)
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "numpy" and not numpy_generation.supports(model):
        raise ConfigError("the numpy engine runs float32 LSTM/GRU models on the CPU only")
    ids = encode_prompt(tokenizer, prompt, unknown)
    if not ids:
        ids = [start_token(tokenizer)]
    was_training = model.training
    model.eval()
    try:
        return _generate_ids(
            model, tokenizer, ids, length, sampling, num_samples, seed, stop, on_text, engine
        )
    finally:
        model.train(was_training)


SHORT_PROMPT = 16
"""Prompts of at most this many tokens (before the last) are read by NumPy steps on the NumPy
engine: ``torch.lstm`` costs more per call than 16 one-row NumPy steps of an LSTM 512."""


def prompt_state(
    model: LanguageModel, rows: RowStepper, ids: list[int], clamps: Clamps | None = None
) -> Sequence[Any]:
    """One row of state after reading ``ids[:-1]`` (the last is read by the first tick), for
    ``rows``' ``add``: a short prompt on the NumPy engine by NumPy steps, else ``read_prompt``."""
    if isinstance(rows, NumpyRNNStep) and len(ids) - 1 <= SHORT_PROMPT:
        reader = rows.fork(1)
        reader.clamps = clamps
        for token in ids[:-1]:
            reader.step(np.array([token], dtype=np.int64))
        return reader.parts()
    return read_prompt(model, ids, clamps)


def row_stepper(model: LanguageModel, engine: str = "auto") -> RowStepper:
    """The rows' one-token step for ``engine``: NumPy (``numpy_step``) for a float32 LSTM/GRU
    on the CPU unless ``engine`` is ``torch``; else the family's torch stepper."""
    if engine == "numpy" or (engine == "auto" and numpy_generation.supports(model)):
        return NumpyRNNStep.from_fused(FusedStepper(model), 0)  # type: ignore[arg-type]  # supports() checked it is an RNN
    return TorchRows(model, build_stepper(model))


def _generate_ids(
    model: LanguageModel,
    tokenizer: Tokenizer,
    ids: list[int],
    length: int,
    sampling: SamplingConfig,
    num_samples: int,
    seed: int,
    stop: Sequence[str],
    on_text: TokenCallback | None,
    engine: str,
) -> list[Sample]:
    rows = num_samples
    clamps = Clamps.build(model, sampling.clamp)  # units held at every step, prompt included
    seeds = [seed + r for r in range(rows)]
    watcher = StopWatcher(stop)
    chain = SamplingChain(sampling, vocab=token_strings(tokenizer))  # built once for the loop
    stream = Stream(chain, seeds, ids, length, clamps)
    loop = TokenLoop(row_stepper(model, engine))
    loop.add(stream, prompt_state(model, loop.stepper, ids, clamps))
    # text is followed token by token only when someone reads it as it is made, or a rule
    # (a regex) may end a row
    follow = (
        _TextFollower(tokenizer, rows, watcher, on_text, chain)
        if watcher.stops or on_text or chain.ends_rows
        else None
    )
    # several rows: the draw runs torch's pool, which BLAS threads must not fight (one row's
    # draw is NumPy alone, and its step gains from BLAS threads: LSTM 512 6,000 vs 4,000/s)
    crowded = isinstance(loop.stepper, NumpyRNNStep) and rows > 1
    with one_blas_thread() if crowded else contextlib.nullcontext():
        while not stream.full:
            failed = loop.tick()
            if failed:
                raise failed[0].cause
            if follow is not None and not follow.advance(stream.last_drawn().tolist()):
                break
    made = stream.made
    generated = stream.history[:, len(ids) : len(ids) + made].tolist()
    samples = []
    for r in range(rows):
        count = follow.counts[r] if follow is not None else made
        tokens = generated[r][:count]
        pieces = tokenizer.token_texts(tokens)
        text = follow.finish(r) if follow is not None else "".join(pieces)
        samples.append(
            Sample(
                text=text,
                seed=seeds[r],
                tokens=tokens,
                pieces=pieces,
                logprobs=stream.logprobs[r, :count].tolist(),
                entropies=stream.entropies[r, :count].tolist(),
                stop=follow.stops[r] if follow is not None else None,
                stop_reason=follow.reasons[r] if follow is not None else "length",
                matched=constraints.matches(sampling, text),
            )
        )
    _warn_unmatched(samples, length)
    return samples


def _warn_unmatched(samples: list[Sample], length: int) -> None:
    """One warning naming the samples that stopped before their text matched --regex."""
    short = [s for s in samples if s.matched is False]
    if short:
        seeds = ", ".join(str(s.seed) for s in short[:10]) + (", ..." if len(short) > 10 else "")
        warnings.warn(
            f"{len(short)} of {len(samples)} sample(s) (seed {seeds}) stopped (--length {length} "
            "or a stop sequence) before completing --regex: the text is the start of a match, "
            "not a match",
            stacklevel=4,
        )


class _TextFollower:
    """Per-sample text as it is made: stop sequences, rows a rule ended (``chain.done``: a
    complete regex match) and the streaming callback."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        rows: int,
        watcher: StopWatcher,
        on_text: TokenCallback | None,
        chain: SamplingChain | None = None,
    ):
        self.tokenizer = tokenizer
        self.watcher = watcher
        self.on_text = on_text
        self.texts = [""] * rows
        self.emitted = [0] * rows
        self.counts = [0] * rows
        self.stops: list[str | None] = [None] * rows
        self.reasons = ["length"] * rows  # stop | regex once a row has stopped
        self.chain = chain if chain is not None and chain.ends_rows else None
        self.active = list(range(rows))

    def advance(self, tokens: list[int]) -> bool:
        """Take one new token per row; False once every row has stopped."""
        still = []
        pieces = self.tokenizer.token_texts(tokens)
        ended = self.chain.done_rows() if self.chain is not None else None
        for r in self.active:
            self.counts[r] += 1
            before = len(self.texts[r])
            self.texts[r] += pieces[r]
            hit = self.watcher.find(self.texts[r], before) if self.watcher.stops else None
            if hit is not None:
                self.texts[r] = self.texts[r][: hit[0]]
                self.stops[r] = hit[1]
                self.reasons[r] = "stop"
            elif ended is not None and bool(ended[r]):
                self.reasons[r] = "regex"
            end = len(self.texts[r]) if hit is not None else self.watcher.safe_end(self.texts[r])
            if self.on_text is not None and end > self.emitted[r]:
                self.on_text(r, self.texts[r][self.emitted[r] : end])
            self.emitted[r] = max(self.emitted[r], end)
            if hit is None and self.reasons[r] == "length":
                still.append(r)
        self.active = still
        return bool(still)

    def finish(self, r: int) -> str:
        """Flush what was held back (a possible stop-sequence start) and return the text."""
        if self.on_text is not None and len(self.texts[r]) > self.emitted[r]:
            self.on_text(r, self.texts[r][self.emitted[r] :])
            self.emitted[r] = len(self.texts[r])
        return self.texts[r]


def read_prompt(
    model: LanguageModel,
    ids: list[int],
    clamps: Clamps | None = None,
    stepper: Stepper | None = None,
) -> State:
    """One-row state after reading every prompt token but the last (which the first step reads).

    With ``clamps`` the prompt is read one step at a time through ``stepper`` (the caller's, or
    one built here), which holds them.
    """
    device = model.head.weight.device
    state = model.initial_state(1, device)
    if len(ids) > 1 and clamps is not None:
        stepper = stepper or build_stepper(model)
        for token in ids[:-1]:
            _, state = stepper.step(torch.tensor([token], device=device), state, clamps)
    elif len(ids) > 1:
        _, state = model(torch.tensor([ids[:-1]], dtype=torch.long, device=device), state)
    return state


@torch.inference_mode()
def beam_generate(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str = "",
    *,
    beams: int,
    length: int,
    length_penalty: float = 1.0,
    sampling: SamplingConfig | None = None,
    unknown: str = "warn",
    lines: bool = False,
) -> list[Sample]:
    """The ``beams`` best continuations (best first); ``Sample.logprobs`` holds one entry: the score.

    With ``--regex`` only complete matches come back (``beam.beam_search``), each ended where
    its automaton could go no further or at ``length``; none within ``length`` is an error.
    ``lines`` (a ``--lines`` run): ``prompt`` is the start of one item, read from the boundary
    as training read items, and a beam ends at the next boundary (``stop_reason`` ``"stop"``;
    the boundary is in ``tokens``, not in ``text``).
    """
    check_request(length, 1)
    sampling = (sampling or SamplingConfig()).validate()
    end = None
    if lines:
        if BOUNDARY in prompt:
            raise GenerationError(
                "--prompt is the start of one item and cannot hold a line break in a --lines run"
            )
        end = tokenizer.vocab.index(BOUNDARY)
        ids = [end, *encode_prompt(tokenizer, prompt, unknown)]
    else:
        ids = encode_prompt(tokenizer, prompt, unknown) or [start_token(tokenizer)]
    was_training = model.training
    model.eval()
    clamps = Clamps.build(model, sampling.clamp)
    try:
        rows = row_stepper(model)  # the stepper generation uses; beams are its rows
        rows.clamps = clamps
        rows.add(prompt_state(model, rows, ids, clamps))

        def step(last: torch.Tensor, _state: None) -> tuple[torch.Tensor, None]:
            return torch.from_numpy(rows.step(last.numpy()).copy()), None

        def select(_state: None, index: torch.Tensor) -> None:
            rows.keep(index.numpy())

        crowded = isinstance(rows, NumpyRNNStep) and beams > 1  # as in ``_generate_ids``
        with one_blas_thread() if crowded else contextlib.nullcontext():
            found = beam_search(
                step,
                select,
                None,
                ids[-1],
                width=beams,
                length=length,
                length_penalty=length_penalty,
                cfg=sampling,
                history=ids,
                vocab=token_strings(tokenizer),
                end_token=end,
            )
    finally:
        model.train(was_training)
    if not found and sampling.regex is not None:
        raise GenerationError(
            f"no beam completed --regex within --length {length} tokens; raise --length"
        )
    ended = "regex" if sampling.regex is not None else "length"  # a shorter beam: a full match

    def sample(tokens: list[int], score: float) -> Sample:
        at_end = end is not None and bool(tokens) and tokens[-1] == end
        text = tokenizer.decode(tokens[:-1] if at_end else tokens)
        return Sample(
            text=text,
            seed=0,
            tokens=tokens,
            pieces=tokenizer.token_texts(tokens),
            logprobs=[score],
            stop_reason="stop" if at_end else ended if len(tokens) < length else "length",
            matched=constraints.matches(sampling, text),
        )

    return [sample(tokens, score) for tokens, score in found]
