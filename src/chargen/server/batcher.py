"""Continuous batching: every request in flight advances by one token per model step.

A worker thread owns the model. Each tick it admits new requests, reads a bounded slice of
the prompts still being read, drops finished, timed-out or abandoned requests, stacks the last
token and the state of every active request into one batch, runs ONE model step, and hands each
request its next token through an asyncio queue. A request's sampling rules and seed are its
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
from dataclasses import dataclass, field
from typing import Any

import torch

from chargen import constraints
from chargen.chain import SamplingChain
from chargen.clamp import Clamps
from chargen.errors import ChargenError
from chargen.generate import StopWatcher
from chargen.models import LanguageModel, State, build_stepper, concat_states
from chargen.rng import uniforms
from chargen.sampling import entropy, non_finite_error, select_next, usable_rows
from chargen.tokenizer import Tokenizer

log = logging.getLogger("chargen.server")

PROMPT_TOKENS_PER_TICK = 64
"""Prompt tokens read per tick, all requests together: a long prompt is read over several
ticks, so it delays the other requests by one short slice per token they draw (64 tokens of
the default LSTM 512 take about 3 ms on 2 CPU cores)."""


def _groups(jobs: list[Job]) -> list[list[int]]:
    """Rows that can share one pass of the sampling chain (equal ``chain.key``): same rules and
    no history read; a chain that reads its history is a group of its own."""
    groups: dict[Any, list[int]] = {}
    for row, job in enumerate(jobs):
        groups.setdefault(job.chain.key, []).append(row)
    return list(groups.values())


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
    state: State | None = None
    read: int = 0  # prompt tokens read into ``state`` (all but the last are read before drawing)
    history: list[int] = field(default_factory=list)
    made: int = 0
    text: str = ""
    ended: bool = False  # a final event (done or error) was sent and the slot released

    def __post_init__(self) -> None:
        self.watcher = StopWatcher(self.stops)

    def send(self, event: dict[str, Any]) -> None:
        # a closed event loop means the server is gone and nobody listens
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Batcher:
    """Runs every active job one token per tick in a single batched model step."""

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer, max_jobs: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_jobs = max_jobs
        self.pieces = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        self.stepper = build_stepper(self.model)
        self._incoming: queue.Queue[Job] = queue.Queue()
        self._reading: list[Job] = []  # prompts still being read, oldest first
        self._active: list[Job] = []  # drawing tokens
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.steps = 0  # model steps taken (one per tick, whatever the batch)
        # held while weights are copied in, and by anyone running the model outside this thread
        self.weights_lock = threading.Lock()
        self.weights: dict[str, Any] = {"reloads": 0}  # what is served (``live.py``)
        self._offered: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chargen-batcher", daemon=True)
        self._thread.start()

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
            self.stepper = build_stepper(self.model)  # a fused step keeps its own copies
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

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                self._take_weights()
                self._admit(block=not (self._active or self._reading))
                self._retire_abandoned()
                with torch.inference_mode():
                    self._read_prompts()
                    if self._active:
                        self._tick()
            except Exception as exc:  # nothing one job did: end the jobs of this tick, go on
                log.exception("generation step failed")
                for job in [*self._reading, *self._active]:
                    self._fail(job, exc)

    def _admit(self, block: bool) -> None:
        try:
            job = self._incoming.get(timeout=0.05) if block else self._incoming.get_nowait()
        except queue.Empty:
            return
        while True:
            job.history = list(job.ids)
            job.chain.reset([job.seed])
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
                if job.state is None:
                    job.state = self.model.initial_state(1, device)
                end = min(len(job.ids) - 1, job.read + budget)  # the last id is read by a step
                if end > job.read and job.clamps is not None:  # held units: a step at a time
                    for token in job.ids[job.read : end]:
                        last = torch.tensor([token], device=device)
                        _, job.state = self.stepper.step(last, job.state, job.clamps)
                    budget -= end - job.read
                    job.read = end
                elif end > job.read:
                    chunk = torch.tensor([job.ids[job.read : end]], dtype=torch.long, device=device)
                    _, job.state = self.model(chunk, job.state)
                    budget -= end - job.read
                    job.read = end
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
        jobs = list(self._active)
        device = self.model.head.weight.device
        last = torch.tensor([job.history[-1] for job in jobs], dtype=torch.long, device=device)
        assert all(job.state is not None for job in jobs)
        try:
            state = concat_states([job.state for job in jobs])  # type: ignore[misc]
            clamps = Clamps.stack([job.clamps for job in jobs])  # each row its own units
            logits, state = self.stepper.step(last, state, clamps)
        except Exception as exc:  # the shared step failed: end the requests of this step only
            log.exception("model step failed")
            for job in jobs:
                self._fail(job, exc)
            return
        self.steps += 1
        logits = logits.float().cpu()
        finite = usable_rows(logits).tolist()
        for row, job in enumerate(jobs):
            job.state = tuple(s[:, row : row + 1] for s in state)
            if not finite[row]:  # only this row's request ends
                self._fail(job, non_finite_error(job.made))
        live = [row for row in range(len(jobs)) if finite[row]]
        for rows in _groups([jobs[r] for r in live]):
            group = [jobs[live[r]] for r in rows]
            try:
                self._draw(group, logits[[live[r] for r in rows]])
            except Exception as exc:  # this group's rules failed: end its requests only
                if not isinstance(exc, ChargenError):
                    log.exception("sampling failed")
                for job in group:
                    self._fail(job, exc)

    def _draw(self, group: list[Job], logits: torch.Tensor) -> None:
        """One token for each job of ``group`` (one chain key) from its rows of ``logits``."""
        chain = group[0].chain
        if chain.reads_history:  # a group of one: the request's own history
            history = torch.tensor([group[0].history], dtype=torch.long)
        else:
            history = torch.zeros((len(group), 0), dtype=torch.long)
        logprobs = chain.logprobs(logits, history)
        u = torch.cat([uniforms([job.seed], job.made) for job in group])
        picked = select_next(logprobs, u)
        if chain.stateful:  # a group of one: its rules follow the token drawn
            chain.observe(picked, logprobs)
        tokens = picked.tolist()
        chosen = logprobs.gather(1, torch.tensor(tokens)[:, None])[:, 0].tolist()
        ents = entropy(logprobs).tolist()
        for job, token, lp, ent in zip(group, tokens, chosen, ents, strict=True):
            self._emit(job, token, lp, ent)

    def _emit(self, job: Job, token: int, logprob: float, ent: float) -> None:
        job.history.append(token)
        piece = self.pieces[token]
        before = len(job.text)
        job.text += piece
        job.made += 1
        job.send(
            {
                "event": "token",
                "index": job.made - 1,
                "id": token,
                "token": piece,
                "logprob": logprob,
                "entropy": ent,
            }
        )
        hit = job.watcher.find(job.text, before) if job.watcher.stops else None
        if hit is not None:
            job.text = job.text[: hit[0]]
            self._finish(job, "stop", hit[1])
        elif job.chain.ends_rows and bool(job.chain.done()[0]):  # type: ignore[index]
            self._finish(job, "regex")  # a complete match that cannot go on (a group of one)
        elif job.made >= job.length:
            self._finish(job, "length")

    def _finish(self, job: Job, reason: str, stop: str | None = None) -> None:
        if self._end(job):
            job.send(
                {
                    "event": "done",
                    "stop_reason": reason,
                    "stop": stop,
                    "text": job.text,
                    "tokens": job.made,
                    # with a regex: whether the text matches it in full (None without)
                    "matched": constraints.matches(job.chain.cfg, job.text),
                }
            )

    def _fail(self, job: Job, exc: BaseException) -> None:
        if self._end(job):
            job.send({"event": "error", "detail": failure_line(exc)})

    def _end(self, job: Job) -> bool:
        """Take ``job`` out of the loop and free its slot, once; False if it had ended already.

        The slot is freed before the final event is sent: a client may ask again the moment
        it reads it.
        """
        for place in (self._reading, self._active):
            if job in place:
                place.remove(job)
        with self._lock:
            if job.ended:
                return False
            job.ended = True
            self._count -= 1
        return True
