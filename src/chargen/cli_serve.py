"""``chargen serve``: check the server flags, then run the playground (a web page and an
HTTP API over a run, ``chargen.server``) under uvicorn; needs ``chargen[serve]``.
"""

from __future__ import annotations

import argparse
import math
import sys

from chargen.errors import ConfigError


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from chargen.server.app import ServerLimits, create_app
        from chargen.server.guard import guarded_protocol
        from chargen.server.threads import use_threads
    except ImportError:
        raise ConfigError(
            "serving needs FastAPI and uvicorn: pip install 'chargen[serve]'"
        ) from None
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [1, 65535], got {args.port}")
    for flag, value in (("--max-queue", args.max_queue), ("--max-length", args.max_length)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    for flag, seconds in (("--timeout", args.timeout), ("--header-timeout", args.header_timeout)):
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"{flag} must be a number of seconds > 0, got {seconds}")
    connections = 4 * args.max_queue + 16  # uvicorn answers 503 past it
    per_client = connections // 2 if args.client_connections is None else args.client_connections
    if not 1 <= per_client <= connections:
        raise ConfigError(
            f"--client-connections must be in [1, {connections}] (4 x --max-queue + 16), "
            f"got {per_client}"
        )
    limits = ServerLimits(
        max_queue=args.max_queue, max_length=args.max_length, timeout_s=args.timeout
    )
    if not (math.isfinite(args.follow) and args.follow >= 0):
        raise ConfigError(f"--follow must be a number of seconds >= 0, got {args.follow}")
    threads = use_threads(args.threads)
    app = create_app(args.run_dir, limits, args.cors_origin, follow_s=args.follow or None)
    print(
        f"chargen: serving {args.run_dir} on http://{args.host}:{args.port}/ (API docs at /docs; "
        f"{threads} compute thread{'s' if threads > 1 else ''})",
        file=sys.stderr,
    )
    # SIGTERM ends the server within about 2 s whatever is in flight: uvicorn waits at most
    # 1 s for open connections (streams included) before cancelling them, then the batcher
    # ends what is left; past limit_concurrency connections uvicorn answers 503 at once, and
    # the guard keeps one address from holding them all or holding one without a request
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=1,
        limit_concurrency=connections,
        http=guarded_protocol(args.header_timeout, per_client),
    )
    return 0
