"""Continuous batching: every request in flight advances by one token per model step.

A worker thread owns the model. Each tick it admits new requests (reading their prompts),
drops finished, timed-out or abandoned ones, stacks the last token and the LSTM state of every
active request into one batch, runs ONE model step, and hands each request its next token
through an asyncio queue. A request's sampling rules and seed are its own, and its draws come
from the same counter-based uniforms as ``chargen generate``, so a served sample equals the
command line's for the same seed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from chargen.generate import StopWatcher, read_prompt
from chargen.models import LanguageModel, State, build_stepper, concat_states
from chargen.rng import uniforms
from chargen.sampling import SamplingConfig, entropy, process_logits, select_next
from chargen.tokenizer import Tokenizer


def _needs_history(cfg: SamplingConfig) -> bool:
    return bool(
        cfg.repetition_penalty != 1.0
        or cfg.frequency_penalty
        or cfg.presence_penalty
        or cfg.no_repeat_ngram_size
    )


def _groups(jobs: list[Job]) -> list[tuple[list[int], SamplingConfig]]:
    """Rows that can share one pass of the sampling chain: same rules and no history needed.

    A job whose rules read its history (penalties, n-gram bans) is a group of its own.
    """
    groups: dict[Any, list[int]] = {}
    configs: dict[Any, SamplingConfig] = {}
    for row, job in enumerate(jobs):
        key = ("own", row) if _needs_history(job.cfg) else tuple(sorted(job.cfg.to_dict().items()))
        groups.setdefault(key, []).append(row)
        configs[key] = job.cfg
    return [(rows, configs[key]) for key, rows in groups.items()]


class QueueFull(Exception):
    """More requests in flight than the server accepts (answered with 429)."""


@dataclass(eq=False)
class Job:
    """One generation request and its progress."""

    ids: list[int]
    length: int
    cfg: SamplingConfig
    seed: int
    stops: list[str]
    deadline: float
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    state: State | None = None
    history: list[int] = field(default_factory=list)
    made: int = 0
    text: str = ""

    def __post_init__(self) -> None:
        self.watcher = StopWatcher(self.stops)

    def send(self, event: dict[str, Any]) -> None:
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
        self._active: list[Job] = []
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.steps = 0  # model steps taken (one per tick, whatever the batch)
        self._thread = threading.Thread(target=self._run, name="chargen-batcher", daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        return self._count

    def submit(self, job: Job) -> None:
        """Queue ``job``; QueueFull when ``max_jobs`` are already in flight."""
        with self._lock:
            if self._count >= self.max_jobs:
                raise QueueFull
            self._count += 1
        self._incoming.put(job)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            self._admit(block=not self._active)
            self._retire_abandoned()
            if self._active:
                with torch.inference_mode():
                    self._tick()

    def _admit(self, block: bool) -> None:
        try:
            job = self._incoming.get(timeout=0.05) if block else self._incoming.get_nowait()
        except queue.Empty:
            return
        while True:
            with torch.inference_mode():
                job.state = read_prompt(self.model, job.ids)
            job.history = list(job.ids)
            if job.length == 0:
                self._finish(job, "length")
            else:
                self._active.append(job)
            try:
                job = self._incoming.get_nowait()
            except queue.Empty:
                return

    def _retire_abandoned(self) -> None:
        now = time.monotonic()
        for job in list(self._active):
            if job.cancelled:
                self._active.remove(job)
                self._release()
            elif now > job.deadline:
                self._finish(job, "timeout")

    def _tick(self) -> None:
        jobs = self._active
        device = self.model.head.weight.device
        last = torch.tensor([job.history[-1] for job in jobs], dtype=torch.long, device=device)
        assert all(job.state is not None for job in jobs)
        state = concat_states([job.state for job in jobs])  # type: ignore[misc]
        logits, state = self.stepper.step(last, state)
        self.steps += 1
        logits = logits.float().cpu()
        for row, job in enumerate(jobs):
            job.state = tuple(s[:, row : row + 1] for s in state)
        for rows, cfg in _groups(jobs):
            group = [jobs[r] for r in rows]
            if _needs_history(cfg):  # penalties and bans read each row's own history
                history = torch.tensor([group[0].history], dtype=torch.long)
            else:
                history = torch.zeros((len(rows), 0), dtype=torch.long)
            logprobs = process_logits(logits[rows], history, cfg)
            u = torch.cat([uniforms([job.seed], job.made) for job in group])
            tokens = select_next(logprobs, u).tolist()
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
        elif job.made >= job.length:
            self._finish(job, "length")

    def _finish(self, job: Job, reason: str, stop: str | None = None) -> None:
        if job in self._active:
            self._active.remove(job)
        self._release()  # before "done" is sent: a client may ask again the moment it reads it
        done = {
            "event": "done",
            "stop_reason": reason,
            "stop": stop,
            "text": job.text,
            "tokens": job.made,
        }
        job.send(done)

    def _release(self) -> None:
        with self._lock:
            self._count -= 1
