"""Continuous batching: every request in flight advances by one token per model step.

A worker thread owns the model. Each tick it admits new requests, reads a bounded slice of
the prompts still being read, drops finished, timed-out or abandoned requests, and runs one
tick of ``token_loop.TokenLoop`` (the loop ``chargen generate`` uses): ONE model step for
every request in flight, whose states the row stepper keeps as one batch (NumPy for an LSTM or
GRU on the CPU, as on the command line), then one token per request. The tick's events go to
the asyncio side in one hand-off. A request's sampling rules and seed are its
own, and its draws come from the same counter-based uniforms as ``chargen generate``, so a
served sample equals the command line's for the same seed.

One request can never stop the others: whatever goes wrong while serving a request (its
prompt, its sampling rules, non-finite scores in its row) ends that request with an ``error``
event, and a failure of the shared model step ends the requests of that step; the worker keeps
ticking. ``heartbeat`` is refreshed on every turn of the loop (at least every 50 ms when idle),
so ``/healthz`` can tell a live loop from a stuck one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from chargen import constraints
from chargen.chain import SamplingChain
from chargen.clamp import Clamps
from chargen.errors import ChargenError
from chargen.generate import SHORT_PROMPT, StopWatcher, prompt_state, row_stepper
from chargen.models import LanguageModel, State, build_stepper
from chargen.numpy_step import one_blas_thread
from chargen.token_loop import Stream, TokenLoop
from chargen.token_record import token_fields
from chargen.tokenizer import Tokenizer

log = logging.getLogger("chargen.server")

PROMPT_TOKENS_PER_TICK = 64
"""Prompt tokens read per tick, all requests together: a long prompt is read over several
ticks, so it delays the other requests by one short slice per token they draw (64 tokens of
the default LSTM 512 take about 3 ms on 2 CPU cores)."""


def failure_line(exc: BaseException) -> str:
    """One line for the client: a ChargenError's own message, else only the error's kind.

    Nothing else of an unexpected error reaches the client (no traceback, no path); the server
    log has the whole of it.
    """
    if isinstance(exc, ChargenError):
        return " ".join(str(exc).split())
    return f"generation failed on the server ({type(exc).__name__}); the server log has details"


class QueueFull(Exception):
    """More requests in flight than the server accepts (answered with 429)."""


@dataclass(eq=False)
class Job:
    """One generation request and its progress."""

    ids: list[int]
    length: int
    chain: SamplingChain  # built once for the request
    seed: int
    stops: list[str]
    deadline: float
    loop: asyncio.AbstractEventLoop
    clamps: Clamps | None = None  # units held at every step (``clamp.py``), this row only
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    state: Sequence[Any] | None = None  # while its prompt is read
    read: int = 0  # prompt tokens read into ``state`` (all but the last are read before drawing)
    stream: Stream | None = None  # its row in the token loop, once the prompt is read
    text: str = ""
    ended: bool = False  # a final event (done or error) was sent and the slot released

    def __post_init__(self) -> None:
        self.watcher = StopWatcher(self.stops)


class Batcher:
    """Runs every active job one token per tick in a single batched model step."""

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer, max_jobs: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_jobs = max_jobs
        self.pieces = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        self.tokens = TokenLoop(row_stepper(self.model))
        self.prompt_stepper = build_stepper(self.model)  # prompts of requests that hold units
        self._incoming: queue.Queue[Job] = queue.Queue()
        self._reading: list[Job] = []  # prompts still being read, oldest first
        self._active: list[Job] = []  # drawing tokens
        self._gone: list[Stream] = []  # rows to drop from the loop before its next tick
        self._outbox: list[tuple[Job, dict[str, Any]]] = []  # events of this turn, in order
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # held while weights are copied in, and by anyone running the model outside this thread
        self.weights_lock = threading.Lock()
        self.weights: dict[str, Any] = {"reloads": 0}  # what is served (``live.py``)
        self._offered: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chargen-batcher", daemon=True)
        self._thread.start()

    @property
    def stepper(self) -> Any:
        """The row stepper of the token loop (the batched model step)."""
        return self.tokens.stepper

    @property
    def steps(self) -> int:
        """Model steps taken (one per tick, whatever the batch)."""
        return self.tokens.steps

    @property
    def in_flight(self) -> int:
        return self._count

    def ticking(self, within_s: float) -> bool:
        """True while the worker thread is alive and turned its loop within ``within_s``."""
        return self._thread.is_alive() and time.monotonic() - self.heartbeat <= within_s

    def submit(self, job: Job) -> None:
        """Queue ``job``; QueueFull when ``max_jobs`` are already in flight."""
        with self._lock:
            if self._count >= self.max_jobs:
                raise QueueFull
            self._count += 1
        self._incoming.put(job)

    def offer_weights(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """New weights for the model (checked against it by the caller): copied in by the
        worker between two model steps; requests in flight go on with them."""
        self._offered = (tensors, info)

    def _take_weights(self) -> None:
        offered, self._offered = self._offered, None
        if offered is None:
            return
        tensors, info = offered
        with self.weights_lock:
            self.model.load_state_dict(tensors, strict=False)  # names and shapes checked
            # a fused or NumPy step keeps its own copies: a new one, the rows' state carried
            self.tokens.replace_stepper(row_stepper(self.model))
            self.prompt_stepper = build_stepper(self.model)
        self.weights = {**info, "reloads": self.weights["reloads"] + 1, "loaded_at": time.time()}
        log.info("serving new weights: %s", info)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the worker; every request still in flight gets an error event."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        pending = [*self._reading, *self._active]
        while True:
            try:
                pending.append(self._incoming.get_nowait())
            except queue.Empty:
                break
        for job in pending:
            self._fail(job, ChargenError("the server is shutting down"))
        self._flush()

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        with one_blas_thread():  # the NumPy step's BLAS must not fight torch's pool
            self._loop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                self._take_weights()
                self._admit(block=not (self._active or self._reading))
                self._retire_abandoned()
                with torch.inference_mode():
                    self._read_prompts()
                    self._drop_gone()
                    if self._active:
                        self._tick()
            except Exception as exc:  # nothing one job did: end the jobs of this tick, go on
                log.exception("generation step failed")
                for job in [*self._reading, *self._active]:
                    self._fail(job, exc)
            self._drop_gone()
            self._flush()

    def _admit(self, block: bool) -> None:
        try:
            job = self._incoming.get(timeout=0.05) if block else self._incoming.get_nowait()
        except queue.Empty:
            return
        while True:
            self._reading.append(job)
            try:
                job = self._incoming.get_nowait()
            except queue.Empty:
                return

    def _retire_abandoned(self) -> None:
        now = time.monotonic()
        for job in [*self._reading, *self._active]:
            if job.cancelled:
                self._end(job)
            elif now > job.deadline:
                self._finish(job, "timeout")

    def _read_prompts(self) -> None:
        """Read at most ``PROMPT_TOKENS_PER_TICK`` prompt tokens in all, shortest rest first.

        A short prompt is therefore never queued behind a long one, and a request with nothing
        left to read starts drawing in this very tick.
        """
        budget = PROMPT_TOKENS_PER_TICK
        device = self.model.head.weight.device
        for job in sorted(self._reading, key=lambda j: len(j.ids) - j.read):
            try:
                if job.state is None and len(job.ids) - 1 <= SHORT_PROMPT:  # in one go
                    job.state = prompt_state(self.model, self.stepper, job.ids, job.clamps)
                    budget -= len(job.ids) - 1
                    job.read = len(job.ids) - 1
                if job.state is None:
                    job.state = self.model.initial_state(1, device)
                end = min(len(job.ids) - 1, job.read + budget)  # the last id is read by a step
                if end > job.read and job.clamps is not None:  # held units: a step at a time
                    for token in job.ids[job.read : end]:
                        last = torch.tensor([token], device=device)
                        _, job.state = self.prompt_stepper.step(
                            last, cast(State, job.state), job.clamps
                        )
                    budget -= end - job.read
                    job.read = end
                elif end > job.read:
                    chunk = torch.tensor([job.ids[job.read : end]], dtype=torch.long, device=device)
                    _, job.state = self.model(chunk, cast(State, job.state))
                    budget -= end - job.read
                    job.read = end
                if job.read >= len(job.ids) - 1 and job.length > 0:
                    job.stream = Stream(
                        job.chain, [job.seed], job.ids, job.length, job.clamps, tag=job
                    )
                    self.tokens.add(job.stream, job.state)
                    job.state = None
            except Exception as exc:
                log.exception("reading a prompt failed")
                self._fail(job, exc)
                continue
            if job.read >= len(job.ids) - 1:
                self._reading.remove(job)
                if job.length == 0:
                    self._finish(job, "length")
                else:
                    self._active.append(job)

    def _tick(self) -> None:
        try:
            failed = self.tokens.tick()
        except Exception as exc:  # the shared step failed: end the requests of this step only
            log.exception("model step failed")
            for job in list(self._active):
                self._fail(job, exc)
            return
        lost = {id(f.stream) for f in failed}
        for f in failed:  # only these requests end (non-finite scores, their rules failing)
            if not isinstance(f.cause, ChargenError):
                log.error("sampling failed", exc_info=f.cause)
            self._fail(f.stream.tag, f.cause)
        for stream in self.tokens.streams:
            if id(stream) not in lost and not stream.tag.ended:
                self._emit(stream.tag, stream)

    def _emit(self, job: Job, stream: Stream) -> None:
        t = stream.made - 1
        token = int(stream.history[0, len(job.ids) + t])
        piece = self.pieces[token]
        before = len(job.text)
        job.text += piece
        logprob, entropy = float(stream.logprobs[0, t]), float(stream.entropies[0, t])
        self._send(job, {"event": "token", **token_fields(t, token, piece, logprob, entropy)})
        hit = job.watcher.find(job.text, before) if job.watcher.stops else None
        if hit is not None:
            job.text = job.text[: hit[0]]
            self._finish(job, "stop", hit[1])
        elif job.chain.ends_rows and bool(job.chain.done_rows()[0]):  # type: ignore[index]
            self._finish(job, "regex")  # a complete match that cannot go on (a group of one)
        elif stream.full:
            self._finish(job, "length")

    def _finish(self, job: Job, reason: str, stop: str | None = None) -> None:
        if self._end(job):
            self._send(
                job,
                {
                    "event": "done",
                    "stop_reason": reason,
                    "stop": stop,
                    "text": job.text,
                    "tokens": job.stream.made if job.stream is not None else 0,
                    # with a regex: whether the text matches it in full (None without)
                    "matched": constraints.matches(job.chain.cfg, job.text),
                },
            )

    def _fail(self, job: Job, exc: BaseException) -> None:
        if self._end(job):
            self._send(job, {"event": "error", "detail": failure_line(exc)})

    def _end(self, job: Job) -> bool:
        """Take ``job`` out of the loop and free its slot, once; False if it had ended already.

        The slot is freed before the final event is sent: a client may ask again the moment
        it reads it.
        """
        for place in (self._reading, self._active):
            if job in place:
                place.remove(job)
        if job.stream is not None and not job.ended:
            self._gone.append(job.stream)
        with self._lock:
            if job.ended:
                return False
            job.ended = True
            self._count -= 1
        return True

    def _drop_gone(self) -> None:
        """Drop the rows of ended requests from the loop (one gather for all of them)."""
        if self._gone:
            gone, self._gone = self._gone, []
            self.tokens.remove(gone)

    def _send(self, job: Job, event: dict[str, Any]) -> None:
        self._outbox.append((job, event))

    def _flush(self) -> None:
        """Hand this turn's events to their event loops: one call per loop, in order."""
        if not self._outbox:
            return
        out, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, dict[str, Any]]]] = {}
        for job, event in out:
            by_loop.setdefault(job.loop, []).append((job, event))
        for loop, items in by_loop.items():
            # a closed event loop means the server is gone and nobody listens
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[Job, dict[str, Any]]]) -> None:
    for job, event in items:
        job.events.put_nowait(event)
