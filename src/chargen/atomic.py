"""Safe file I/O: atomic writes that never follow a link, and reads that only take regular files.

Writes go to a fresh temporary name in the same folder (created with ``O_EXCL``, so never
through a symbolic link), are fsynced, then renamed over the target: a reader sees either the
old file or the complete new one, and a link at the target's name is replaced, not followed.
Appends open with ``O_NOFOLLOW``.

Reads open a path, then check what was opened: a FIFO, a device, a socket or a folder is refused
before a byte is read (``O_NONBLOCK`` keeps a FIFO from blocking the open itself), and a file
larger than its caller allows is refused before it is read. JSON is parsed with bounded nesting.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from chargen.errors import ChargenError, CheckpointError

MAX_JSON_DEPTH = 32  # chargen's own JSON files nest 4 levels at most


class JSONDepthError(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH`` (a ValueError, like ``json.JSONDecodeError``)."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; on any failure the old file is untouched."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` atomically with what ``write`` writes into a fresh binary handle
    (streamed, e.g. ``np.save`` of a memmap); on any failure the old file is untouched."""
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except OSError as exc:
        _remove_quietly(tmp_name)
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove_quietly(tmp_name)
        raise
    _fsync_directory(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented UTF-8 JSON (non-ASCII kept as is).

    A string that UTF-8 cannot encode (a file name that was not valid UTF-8, held with
    surrogate escapes) makes the whole file ASCII with ``\\uXXXX`` escapes, which read back to
    the same string.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode("ascii")
    atomic_write_bytes(path, data)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` (UTF-8) to the regular file ``path``, creating it; never through a link.

    CheckpointError naming the file when it is a symbolic link or not a regular file.
    """
    target = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        mode = _lstat_mode(target)
        if mode is not None and stat.S_ISLNK(mode):
            raise CheckpointError(refuse_link_message(target)) from None
        if mode is not None and not stat.S_ISREG(mode):
            raise CheckpointError(f"cannot write {target}: it is {file_kind(mode)}") from None
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}") from None
    with open(fd, "ab") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"cannot write {target}: it is {file_kind(mode)}")
        try:
            handle.write(text.encode("utf-8"))
            handle.flush()
        except OSError as exc:
            raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}") from None


def refuse_link_message(path: Path) -> str:
    """The one line that refuses to write through the symbolic link ``path``."""
    return (
        f"{path} is a symbolic link; chargen never writes through links in its folders "
        "(remove the link and try again)"
    )


def check_writable_folder(folder: Path) -> None:
    """Create and delete a fresh temporary file in ``folder`` (OSError when it cannot)."""
    fd, name = tempfile.mkstemp(prefix=".chargen-write-test.", dir=folder)
    os.close(fd)
    os.unlink(name)


# --- reading ------------------------------------------------------------------------------


def file_kind(mode: int) -> str:
    """``a folder``, ``a FIFO``, ``a character device``, ... for an ``st_mode``."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike[str], error: type[ChargenError]) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed, nothing opened); ``error`` unless a regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(
            f"{path}: cannot read {file_kind(info.st_mode)}; chargen reads only regular files"
        )
    return info


@contextlib.contextmanager
def open_regular(
    path: str | os.PathLike[str], error: type[ChargenError], max_bytes: int | None = None
) -> Iterator[BinaryIO]:
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes`` bytes.

    The check is made on the open descriptor, so nothing can be swapped in between; a FIFO,
    device, socket or folder, or a file too large, raises ``error`` (one line) before any read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except PermissionError:
        raise error(f"{path}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"cannot read {file_kind(info.st_mode)}; chargen reads only regular files"
    elif max_bytes is not None and info.st_size > max_bytes:
        problem = (
            f"{info.st_size:,} bytes, more than the {max_bytes:,} such a file may have "
            "(not a file chargen wrote?)"
        )
    if problem is not None:
        os.close(fd)
        raise error(f"{path}: {problem}")
    os.set_blocking(fd, True)
    with open(fd, "rb") as handle:
        yield handle


def read_regular(
    path: str | os.PathLike[str], error: type[ChargenError], max_bytes: int | None = None
) -> bytes:
    """The bytes of a regular file (``open_regular``'s checks), never more than ``max_bytes``."""
    with open_regular(path, error, max_bytes) as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{path}: grew past {max_bytes:,} bytes while being read")
    return data


def loads_bounded(text: str | bytes) -> Any:
    """``json.loads`` that refuses nesting deeper than ``MAX_JSON_DEPTH`` with JSONDepthError.

    Raises ValueError subclasses only (``json.JSONDecodeError``, JSONDepthError, and
    UnicodeDecodeError for bytes that are not UTF-8), never RecursionError.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONDepthError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise JSONDepthError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


# --- memory -------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory this process may still use (None when the system does not say).

    ``MemAvailable`` of ``/proc/meminfo`` (else free pages from ``os.sysconf``), lowered to what
    a cgroup v2 memory limit leaves.
    """
    found = _meminfo_available()
    if found is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_headroom()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def _meminfo_available() -> int | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _cgroup_headroom() -> int | None:
    """``memory.max - memory.current`` of this process's cgroup v2, if it has a limit."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            line = next((x for x in handle if x.startswith("0::")), None)
        if line is None:
            return None
        folder = Path("/sys/fs/cgroup") / line.strip()[3:].lstrip("/")
        limit = (folder / "memory.max").read_text(encoding="ascii").strip()
        if limit == "max":
            return None
        used = int((folder / "memory.current").read_text(encoding="ascii"))
        return max(0, int(limit) - used)
    return None


# --- helpers ------------------------------------------------------------------------------


def _lstat_mode(path: Path) -> int | None:
    """``st_mode`` of ``path`` itself (a link is not followed); None when it does not exist."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
