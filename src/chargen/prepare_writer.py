"""How ``chargen prepare`` writes a data folder without ever leaving it half-written: the token
ids go to fresh temporary names in the folder (created with ``O_EXCL | O_NOFOLLOW``, so never
through a link), and only once the new data is complete does a short commit replace the old
files (``meta.json`` removed first, then the renames, then the new ``meta.json``). SIGINT /
SIGTERM before the commit raise ``PrepareInterrupted`` (the temporaries removed, old data
untouched); during it they wait.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from chargen.atomic import atomic_write_json
from chargen.errors import ChargenError, CheckpointError
from chargen.prepare_folder import META, TOKENIZER, TOKENS, _leftovers
from chargen.tokenizer import Tokenizer


class PrepareInterrupted(ChargenError):
    """SIGINT or SIGTERM stopped ``prepare``: its temporaries are gone, old data untouched."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Signals:
    """While installed, the first SIGINT / SIGTERM raises PrepareInterrupted; ``held`` defers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.had_data = os.path.lexists(folder / META)
        self.armed = True

    def handler(self, signum: int, frame: Any) -> None:
        if not self.armed:
            return  # during the commit, or after the first signal: finish what is under way
        self.armed = False
        name, code = ("SIGINT", 130) if signum == signal.SIGINT else ("SIGTERM", 143)
        kept = f"{self.folder} keeps its previous data" if self.had_data else "nothing was written"
        raise PrepareInterrupted(f"{name}: prepare stopped; {kept}", code)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        """Route SIGINT and SIGTERM here (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self.handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A stretch no signal interrupts (the commit); a signal during it is ignored."""
        self.armed = False
        yield


def write_folder(
    folder: Path,
    fill: Callable[[BinaryIO], None],
    tok: Tokenizer,
    meta: dict[str, Any],
    signals: _Signals,
) -> None:
    """``fill`` writes the token ids into a fresh temporary in ``folder`` (and completes
    ``meta``); the tokenizer and ``meta`` follow, then the commit. On any failure or signal the
    temporaries (and a folder this call created, if left empty) are removed; an OSError becomes
    a one-line CheckpointError."""
    created = _missing_ancestor(folder)
    staged: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in _leftovers(folder):
            stale.unlink(missing_ok=True)
        tag = secrets.token_hex(6)  # named before it exists, so a signal cannot orphan it
        staged_tokens = folder / f".{TOKENS}.{tag}.partial"
        staged_tok = folder / f".{TOKENIZER}.{tag}.partial"
        staged_meta = folder / f".{META}.{tag}.partial"
        staged += [staged_tokens, staged_tok, staged_meta]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(staged_tokens, flags, 0o666), "wb") as sink:
            fill(sink)
            sink.flush()
            os.fsync(sink.fileno())
        tok.save(staged_tok)
        atomic_write_json(staged_meta, meta)
        with signals.held():
            (folder / META).unlink(missing_ok=True)  # from here the folder reads as half-written
            os.replace(staged_tokens, folder / TOKENS)
            os.replace(staged_tok, folder / TOKENIZER)
            os.replace(staged_meta, folder / META)
    except BaseException as exc:
        for path in staged:
            with contextlib.suppress(OSError):
                path.unlink()
        _remove_empty(folder, created)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        raise


def _missing_ancestor(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (None if it does)."""
    missing = None
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing = path
    return missing


def _remove_empty(folder: Path, created: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``created`` while they are empty."""
    if created is None:
        return
    path = folder
    while True:
        try:
            path.rmdir()
        except OSError:
            return
        if path == created:
            return
        path = path.parent
