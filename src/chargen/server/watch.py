"""The watch over a job in flight that its handler keeps (``watch_job``): the job ends when its
client hangs up or the batcher misses its deadline. /v1/generate and the OpenAI routes use it.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request

from chargen.server.batcher import Job


async def watch_job(job: Job, request: Request | None) -> None:
    """End ``job`` for its handler when its client disconnects or its time is up.

    The batcher ends a job at its deadline; this is the backstop for a loop that cannot
    (a stuck model step): two seconds past the deadline the handler gets an error event.
    With ``request`` (a plain JSON request), a disconnect cancels the job within one tick.
    """

    async def disconnected() -> None:
        assert request is not None
        while (await request.receive())["type"] != "http.disconnect":
            pass

    remaining = max(0.0, job.deadline - time.monotonic()) + 2.0
    try:
        if request is None:
            await asyncio.sleep(remaining)
        else:
            await asyncio.wait_for(disconnected(), remaining)
            job.cancelled = True
            job.events.put_nowait(
                {"event": "error", "detail": "client disconnected", "status": 499}
            )
            return
    except asyncio.TimeoutError:
        pass
    job.cancelled = True
    job.events.put_nowait(
        {"event": "error", "detail": "the generation loop did not answer in time", "status": 503}
    )
