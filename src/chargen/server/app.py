"""FastAPI application: generation (JSON or server-sent events), scoring, the model, the page.

Safe by default: it serves only the run named at start (no path comes from a request), caps
request bodies (counted as they arrive, see ``body.py``), every field, the queue and the time
per request, and sends no CORS headers unless origins are given. Every error is one line of
JSON (``{"detail": "..."}``; OpenAI's ``{"error": {...}}`` on the OpenAI-compatible routes of
``openai_api.py``): no traceback and no path reaches a client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse

from chargen import checkpoint as ckpt
from chargen.chain import SamplingChain
from chargen.clamp import Clamps
from chargen.errors import ChargenError
from chargen.generate import encode_prompt, start_token
from chargen.inspect_next import StageSummary, next_distribution
from chargen.models import TransformerLanguageModel
from chargen.score import SURPRISAL_SCALE, score_text
from chargen.seed_text import seed_text
from chargen.server.batcher import Batcher, Job, QueueFull, failure_line
from chargen.server.beams_route import add_beam_routes
from chargen.server.body import BoundedBody
from chargen.server.live import WeightsFollower, served_file, weights_info
from chargen.server.neurons_route import add_neuron_routes
from chargen.server.openai_api import add_openai_routes
from chargen.server.page_routes import add_page_routes
from chargen.server.requests import (
    DistributionRequest,
    GenerateRequest,
    ScoreRequest,
    ServerLimits,
    check_length_and_prompt,
    sampling_of,
)
from chargen.server.watch import watch_job

log = logging.getLogger("chargen.server")


STREAM_WRITE_S = 0.025
"""Least time between two writes of one event stream: the first token goes out at once, later
ones in writes of what arrived meanwhile (at most 40 a second, far above reading speed), so
the server's HTTP loop does not write each token of 64 streams on its own."""


def _validation_line(exc: RequestValidationError) -> str:
    """Pydantic's errors as one line: where and what, never the offending input itself."""
    parts = []
    for error in exc.errors():
        loc = [x for x in error.get("loc", ()) if x != "body"]
        where = ".".join(_safe_name(x) for x in loc) or "body"
        parts.append(f"{where}: {' '.join(str(error.get('msg', 'invalid')).split())}")
    return "; ".join(parts)[:500]


def _safe_name(part: Any) -> str:
    """A field name or index as sent, quoted (ASCII, at most 40 characters) unless plain."""
    text = str(part)
    if text.isidentifier() or text.isdigit():
        return text[:40]
    return ascii(text[:40])


def _public_config(config: ckpt.RunConfig) -> dict[str, Any]:
    """The run's configuration with its corpus named by its name only (no path of this machine)."""
    data = config.to_dict()
    source = str(data["data"].get("source", ""))
    data["data"]["source"] = Path(source).name or source
    data["data"].pop("data_dir", None)
    return data


def _finite_or_none(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def _stage(stage: StageSummary, pieces: list[str]) -> dict[str, Any]:
    """One stage of the sampler X-ray as JSON: its tokens by their text."""
    return {
        "label": stage.label,
        "tokens": [pieces[i] for i in stage.ids],
        "logprobs": stage.logprobs,
        "kept": stage.kept,
        "entropy_bits": stage.entropy_bits,
    }


def create_app(
    run_dir: str | Path,
    limits: ServerLimits | None = None,
    cors_origins: list[str] | None = None,
    follow_s: float | None = 2.0,
) -> FastAPI:
    """The application for one run folder: its best weights, and with ``follow_s`` (seconds
    between looks; None: never) each new best while the run is still training (``live.py``)."""
    limits = limits or ServerLimits()
    config, tokenizer, model = ckpt.load_run(run_dir)
    run = Path(run_dir)
    batcher = Batcher(model, tokenizer, limits.max_queue)
    batcher.weights.update(weights_info(served_file(run)))
    follower = WeightsFollower(run, batcher, follow_s) if follow_s else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if follower is not None:
            follower.start()
        yield
        if follower is not None:
            follower.close()
        batcher.close()

    app = FastAPI(
        title="chargen playground",
        version="1",
        description=f"Generation from the run {run.name}",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: /docs works with no network
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.add_middleware(
        BoundedBody, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
        )

    folders = sorted({str(run.resolve()), str(run)}, key=len, reverse=True)

    @app.exception_handler(ChargenError)
    async def chargen_error(_: Request, exc: ChargenError) -> JSONResponse:
        detail = " ".join(str(exc).split())
        for folder in folders:  # the run is named by its name, never by where it lives
            detail = detail.replace(folder, run.name)
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_line(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return JSONResponse({"detail": failure_line(exc)}, status_code=500)

    add_page_routes(app)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 while the generation loop is ticking; 503 when it has stopped or is stuck."""
        ok = batcher.ticking(limits.stuck_after_s)
        return JSONResponse(
            {
                "status": "ok" if ok else "unhealthy",
                "in_flight": batcher.in_flight,
                "model_steps": batcher.steps,
            },
            status_code=200 if ok else 503,
        )

    default_prompt: list[Any] = []  # computed on the first request (it may read the corpus)

    @app.get("/v1/model")
    def model_info() -> dict[str, Any]:
        """The run, its curves, its default prompt (``seed_text``: the window of its corpus the
        trainer's samples start from; empty for a ``--lines`` run or when the corpus is not
        here, ``seed_text_note`` says which), units and the surprisal colour scale."""
        metrics = ckpt.MetricsLog(run).read()
        if not default_prompt:
            default_prompt.append(seed_text(config, tokenizer, metrics))
        prompt = default_prompt[0]
        return {
            "run": run.name,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.kind,
            "config": _public_config(config),
            "metrics": [m for m in metrics if m.get("kind") in ("train", "eval")],
            "limits": limits.__dict__,
            "seed_text": prompt.text,
            "seed_text_origin": prompt.origin,
            "seed_text_note": prompt.note,
            "units": {
                "surprisal": "bits",
                "per": tokenizer.unit,
            },
            "surprisal_scale": SURPRISAL_SCALE,
            "weights": {
                **batcher.weights,
                "following": follower is not None,
                "skipped": follower.skipped if follower is not None else None,
            },
        }

    def check_caps(req: GenerateRequest) -> None:
        check_length_and_prompt(req, limits)
        if len(req.stop) > limits.max_stops:
            raise ChargenError(
                f"stop takes at most {limits.max_stops} strings on this server, got {len(req.stop)}"
            )
        if any(len(s) > limits.max_stop_chars for s in req.stop):
            raise ChargenError(
                f"each stop string must be at most {limits.max_stop_chars} characters on this server"
            )

    async def make_job(
        req: GenerateRequest,
        request: Request,
        chain_type: Callable[..., SamplingChain] = SamplingChain,
    ) -> tuple[Job, list[str]]:
        """Check ``req``, build its chain (``chain_type(cfg, vocab=...)``) and submit its job;
        also the warnings of reading its prompt. /v1/completions makes its jobs here too."""
        check_caps(req)
        cfg = sampling_of(req)
        # a regex automaton can take a moment to build on a large vocabulary: off the event
        # loop, so other requests are answered meanwhile
        chain = await asyncio.to_thread(chain_type, cfg, vocab=batcher.pieces)
        clamps = Clamps.build(model, cfg.clamp)  # a unit the model lacks: one line, 400
        if clamps is not None and isinstance(model, TransformerLanguageModel) and not model.rotary:
            raise ChargenError(
                "clamp on a Transformer with learned positions runs in `chargen generate`, "
                "not in the server"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = encode_prompt(tokenizer, req.prompt, "warn") or [start_token(tokenizer)]
        arrived = getattr(request.state, "arrived", time.monotonic())
        job = Job(
            ids,
            req.length,
            chain,
            req.seed,
            [s for s in req.stop if s],
            arrived + limits.timeout_s,
            asyncio.get_running_loop(),
            clamps=clamps,
        )
        try:
            batcher.submit(job)
        except QueueFull:
            raise HTTPException(
                429, f"{limits.max_queue} requests in flight; try again shortly"
            ) from None
        return job, [str(w.message) for w in caught]

    @app.post("/v1/generate")
    async def generate(req: GenerateRequest, request: Request) -> Any:
        job, notes = await make_job(req, request)
        if req.stream:
            return StreamingResponse(
                _events(job, notes),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        watcher = asyncio.ensure_future(watch_job(job, request))
        tokens = []
        try:
            while True:
                event = await job.events.get()
                if event["event"] != "token":
                    break
                tokens.append({k: event[k] for k in ("token", "id", "logprob", "entropy")})
        finally:
            watcher.cancel()
            job.cancelled = True  # ended, or this handler was cancelled: no more work for it
        if event["event"] == "error":
            return JSONResponse({"detail": event["detail"]}, status_code=event.get("status", 500))
        return {
            "text": event["text"],
            "stop_reason": event["stop_reason"],
            "stop": event["stop"],
            "matched": event.get("matched"),
            "tokens": tokens,
            "warnings": notes,
        }

    @app.post("/v1/score")
    def score(req: ScoreRequest) -> dict[str, Any]:
        """Bits per character of ``text`` (a token the model gives probability 0 is null)."""
        if len(req.text) > limits.max_score_chars:
            raise ChargenError(
                f"text must be at most {limits.max_score_chars} characters on this server"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.inference_mode(), batcher.weights_lock:
                scored = score_text(model, tokenizer, req.text, "warn")
        bits = scored.bits.tolist()
        bpc = scored.bits_per_char if scored.chars else None
        return {
            "bits_per_char": bpc if bpc is not None and math.isfinite(bpc) else None,
            "chars": scored.chars,
            "tokens": [
                {"token": p, "bits": b}
                for p, b in zip(scored.pieces, _finite_or_none(bits), strict=True)
            ],
            "warnings": [str(w.message) for w in caught],
        }

    @app.post("/v1/distribution")
    def distribution(req: DistributionRequest) -> dict[str, Any]:
        """The token after ``prompt``: the model's ``top`` likeliest at T = 1 (``tokens``,
        ``logprobs``, as before there were stages), and the sampler X-ray of the sampling
        fields (those of /v1/generate): ``stages``, the model's distribution and then the one
        after each rule of the chain in turn, each with its label, its ``xray_top`` likeliest
        tokens and their log-probabilities, how many tokens keep p > 0 (``kept``) and its entropy
        in bits. The prompt is the history the penalties read; the last stage is the
        distribution /v1/generate draws from (rules that keep state from token to token, XTC,
        mirostat and a regex, as at the first token). A token a rule has ruled out is left out
        of its stage; no value is infinite (-1e30 stands for log 0 in ``logprobs``)."""
        if len(req.prompt) > limits.max_prompt_chars:
            raise ChargenError(
                f"prompt must be at most {limits.max_prompt_chars} characters on this server"
            )
        sampling = sampling_of(req)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if req.prompt:
                encode_prompt(tokenizer, req.prompt, "drop")  # refuses an all-unknown prompt
            with batcher.weights_lock:
                found = next_distribution(
                    model, tokenizer, req.prompt, sampling, "drop", base=batcher.stepper
                )
        ids, logprobs = found.top(req.top)
        return {
            "tokens": [batcher.pieces[i] for i in ids],
            "logprobs": [v if math.isfinite(v) else -1e30 for v in logprobs],
            "stages": [_stage(stage, batcher.pieces) for stage in found.summaries(req.xray_top)],
        }

    model_id = run.resolve().name or "chargen"
    add_openai_routes(app, model_id=model_id, limits=limits, batcher=batcher, make_job=make_job)
    add_neuron_routes(app, model, tokenizer, batcher.weights_lock, model_id)
    add_beam_routes(app, model, tokenizer, batcher.weights_lock, limits)
    return app


async def _events(job: Job, notes: list[str]) -> AsyncIterator[str]:
    """Server-sent events: one per token, then ``done`` with the final text (stop cut applied),
    or ``error`` with one line."""
    watcher = asyncio.ensure_future(watch_job(job, None))
    try:
        for note in notes:
            yield f"event: warning\ndata: {json.dumps({'warning': note})}\n\n"
        clock = asyncio.get_running_loop().time
        written = -STREAM_WRITE_S
        while True:
            # what has arrived since the last write goes out in one write
            events = [await job.events.get()]
            wait = written + STREAM_WRITE_S - clock()
            if wait > 0 and events[0]["event"] == "token":
                await asyncio.sleep(wait)
            while not job.events.empty() and events[-1]["event"] == "token":
                events.append(job.events.get_nowait())
            chunk = []
            for event in events:
                kind = event.pop("event")
                event.pop("status", None)
                chunk.append(f"event: {kind}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n")
            yield "".join(chunk)
            written = clock()
            if kind in ("done", "error"):
                return
    finally:
        watcher.cancel()
        job.cancelled = True  # the client went away (or we finished): stop its work
