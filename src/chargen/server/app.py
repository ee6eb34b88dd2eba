"""FastAPI application: generation (JSON or server-sent events), scoring, the model, the page.

Safe by default: it serves only the run named at start (no path comes from a request), caps
request bodies, lengths, queue size and time per request, and sends no CORS headers unless
origins are given.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from chargen import checkpoint as ckpt
from chargen.errors import ChargenError
from chargen.generate import encode_prompt, read_prompt, start_token
from chargen.sampling import SamplingConfig
from chargen.score import score_text
from chargen.server.batcher import Batcher, Job, QueueFull

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for, and how many may be in flight."""

    max_queue: int = 64
    max_length: int = 2000
    timeout_s: float = 60.0
    max_body_bytes: int = 64 * 1024
    max_score_chars: int = 200_000


class GenerateRequest(BaseModel):
    """Sampling parameters carry the CLI's names."""

    prompt: str = ""
    length: int = Field(200, ge=0)
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_window: int = 64
    no_repeat_ngram_size: int = 0
    seed: int = 0
    stop: list[str] = Field(default_factory=list)
    stream: bool = False


class ScoreRequest(BaseModel):
    text: str


class DistributionRequest(BaseModel):
    prompt: str = ""
    top: int = Field(400, ge=1, le=5000)


def _sampling(req: GenerateRequest) -> SamplingConfig:
    fields = SamplingConfig.__dataclass_fields__
    return SamplingConfig(**{k: getattr(req, k) for k in fields}).validate()


def create_app(
    run_dir: str | Path, limits: ServerLimits | None = None, cors_origins: list[str] | None = None
) -> FastAPI:
    """The application for one run folder (loaded once, best weights)."""
    limits = limits or ServerLimits()
    config, tokenizer, model = ckpt.load_run(run_dir)
    run = Path(run_dir)
    batcher = Batcher(model, tokenizer, limits.max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(
        title="chargen playground",
        version="1",
        description=f"Generation from the run {run.name}",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
        )

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            return JSONResponse(
                {"detail": f"request body over {limits.max_body_bytes} bytes"}, status_code=413
            )
        return await call_next(request)

    @app.exception_handler(ChargenError)
    async def chargen_error(_: Request, exc: ChargenError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        allowed = {p.name for p in STATIC.iterdir()}
        if name not in allowed:
            raise HTTPException(404, "no such asset")
        return FileResponse(STATIC / name)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "in_flight": batcher.in_flight}

    @app.get("/v1/model")
    def model_info() -> dict[str, Any]:
        metrics = ckpt.MetricsLog(run).read()
        return {
            "run": run.name,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.kind,
            "config": config.to_dict(),
            "metrics": [m for m in metrics if m.get("kind") in ("train", "eval")],
            "limits": limits.__dict__,
        }

    def make_job(req: GenerateRequest) -> tuple[Job, list[str]]:
        if req.length > limits.max_length:
            raise ChargenError(
                f"length must be at most {limits.max_length} on this server, got {req.length}"
            )
        cfg = _sampling(req)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = encode_prompt(tokenizer, req.prompt, "warn") or [start_token(tokenizer)]
        job = Job(
            ids,
            req.length,
            cfg,
            req.seed,
            [s for s in req.stop if s],
            time.monotonic() + limits.timeout_s,
            asyncio.get_running_loop(),
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
        job, notes = make_job(req)
        if req.stream:
            return StreamingResponse(
                _events(job, notes),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        tokens = []
        try:
            while True:
                event = await job.events.get()
                if event["event"] == "done":
                    break
                tokens.append({k: event[k] for k in ("token", "id", "logprob", "entropy")})
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        return {
            "text": event["text"],
            "stop_reason": event["stop_reason"],
            "stop": event["stop"],
            "tokens": tokens,
            "warnings": notes,
        }

    @app.post("/v1/score")
    def score(req: ScoreRequest) -> dict[str, Any]:
        if len(req.text) > limits.max_score_chars:
            raise ChargenError(
                f"text must be at most {limits.max_score_chars} characters on this server"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.inference_mode():
                scored = score_text(model, tokenizer, req.text, "warn")
        bits = scored.bits.tolist()
        return {
            "bits_per_char": scored.bits_per_char if scored.chars else None,
            "chars": scored.chars,
            "tokens": [{"token": p, "bits": b} for p, b in zip(scored.pieces, bits, strict=True)],
            "warnings": [str(w.message) for w in caught],
        }

    @app.post("/v1/distribution")
    def distribution(req: DistributionRequest) -> dict[str, Any]:
        """Next-token probabilities at T = 1 after ``prompt``; the page reweights them by T."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids = encode_prompt(tokenizer, req.prompt, "drop") if req.prompt else []
        ids = ids or [start_token(tokenizer)]
        with torch.inference_mode():
            state = read_prompt(model, ids)
            logits, _ = model(torch.tensor([[ids[-1]]], device=model.head.weight.device), state)
            logp = torch.log_softmax(logits[0, -1].float().cpu(), -1)
        top = torch.topk(logp, min(req.top, logp.numel()))
        return {
            "tokens": [tokenizer.decode([int(i)]) for i in top.indices],
            "logprobs": [float(v) if math.isfinite(v) else -1e30 for v in top.values.tolist()],
        }

    return app


async def _events(job: Job, notes: list[str]) -> AsyncIterator[str]:
    """Server-sent events: one per token, then ``done`` with the final text (stop cut applied)."""
    try:
        for note in notes:
            yield f"event: warning\ndata: {json.dumps({'warning': note})}\n\n"
        while True:
            event = await job.events.get()
            kind = event.pop("event")
            yield f"event: {kind}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
            if kind == "done":
                return
    finally:
        job.cancelled = True  # the client went away (or we finished): stop its work
