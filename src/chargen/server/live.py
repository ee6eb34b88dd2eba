"""Serving a run that is still training: the served weights follow its best.

The trainer writes ``best.safetensors`` atomically (a new file renamed over the old) at each new
best evaluation. ``WeightsFollower`` looks at the file's identity (inode, size, mtime) every
``poll_s`` seconds; when it changed, it reads the file with every check of
``checkpoint.read_safetensors`` against the served model's tensors and hands the weights to the
batcher, which copies them in between two model steps (``Batcher.offer_weights``). A file that
does not fit (a different run copied over it, a damaged file) is logged and skipped: the server
goes on with the weights it has, and ``/v1/model`` says what it serves and what it skipped.

Requests in flight when new weights arrive go on with them from the next token.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from safetensors import safe_open

from chargen import checkpoint as ckpt
from chargen.errors import ChargenError

log = logging.getLogger("chargen.server")


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns) of ``path``, or None when there is no such file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def served_file(run: Path) -> Path:
    """The weights a server loads: the best, or the last while no evaluation has run."""
    return ckpt.weights_file(run)


class WeightsFollower:
    """A daemon thread that offers the batcher each new version of the run's best weights."""

    def __init__(self, run: Path, batcher: Any, poll_s: float = 2.0) -> None:
        self.run = run
        self.batcher = batcher
        self.poll_s = poll_s
        self.path = served_file(run)
        self.seen = file_identity(self.path)
        self.skipped: str | None = None  # why the last version that changed was not loaded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chargen-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.poll_s + 1)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # never let a bad file end the thread: log, try the next version
                log.exception("following the run's weights failed")

    def check(self) -> bool:
        """Offer the weights if the served file changed since last seen; True when offered."""
        path = served_file(self.run)
        seen = file_identity(path)
        if seen is None or (path == self.path and seen == self.seen):
            return False
        self.path, self.seen = path, seen
        try:
            specs = ckpt.tensor_specs(ckpt.unique_state(self.batcher.model))
            tensors, metadata = ckpt.read_safetensors(path, specs)
        except ChargenError as exc:
            self.skipped = " ".join(str(exc).split())
            log.warning("new weights not loaded: %s", self.skipped)
            return False
        self.skipped = None
        self.batcher.offer_weights(tensors, {"file": path.name, **_numbers(metadata)})
        return True


def weights_info(path: Path) -> dict[str, Any]:
    """The file name, step and validation loss of a weights file, from its header alone."""
    try:
        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # the server loaded this file a moment ago; a header it cannot read
        metadata = {}  # now only leaves the numbers out
    return {"file": path.name, **_numbers(metadata)}


def _numbers(metadata: dict[str, str]) -> dict[str, Any]:
    """The step and validation loss a weights file's metadata names (what the trainer writes)."""
    out: dict[str, Any] = {}
    for key, kind in (("step", int), ("val_nats_per_char", float)):
        try:
            out[key] = kind(metadata[key])
        except (KeyError, ValueError):
            out[key] = None
    return out
