"""Atomic file writes, folder locks and hashing.

Every file repeatlens writes goes to a temporary file in the same folder, is flushed and
fsynced, then renamed over the target (with the mode a plain ``open()`` would give it,
``0666`` less the umask, so a run shared on a cluster is as readable as the user's other files): a crash never leaves a file that looks complete but
is not, and a failed write (e.g. a full disk) leaves the previous version intact. A write
that fails for lack of space raises :class:`~repeatlens.errors.DiskFullError`, any other
I/O failure :class:`~repeatlens.errors.WriteError`; both name the target file in one line.

Processes that read-modify-write the same tables coordinate through :func:`file_lock`, an
advisory ``flock`` on a lock file (:data:`LOCK_FILE`) inside the folder concerned.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from repeatlens.errors import DiskFullError, LockTimeout, RepeatlensError, WriteError, first_line

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; file_lock degrades to a warning
    fcntl = None  # type: ignore[assignment]

#: Name of the lock file :func:`file_lock` callers keep in a run / sweep folder.
LOCK_FILE = ".repeatlens.lock"

_DISK_FULL = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
# Rust's std::io::Error (safetensors' writer) reports "… (os error 28)"; pyarrow "[errno 28]"
_ERRNO_IN_TEXT = re.compile(r"(?:os error|errno) (\d+)", re.IGNORECASE)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The temporary file is removed whatever happens. An I/O failure (in the block, the
    fsync or the rename) leaves ``path`` as it was and is re-raised as a one-line
    :class:`~repeatlens.errors.WriteError` naming ``path`` —
    :class:`~repeatlens.errors.DiskFullError` when the disk or quota is full.
    """
    path = Path(path)
    tmp_path: Optional[Path] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp made it 0600: give it the mode open() would
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except Exception as e:
        failure = write_failure(path, e)
        if failure is None:
            raise
        raise failure from e
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where Linux shows it (setting
    and restoring it, the only portable way, races with other threads' file creation).

    >>> 0 <= current_umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_failure(path: str | Path, err: BaseException) -> Optional[WriteError]:
    """The one-line error for a failed write of ``path``, or None when ``err`` is no I/O failure.

    Recognises ``OSError`` (Python, numpy, pyarrow) and errors whose text carries an OS
    error number, as safetensors' Rust writer raises them (``… (os error 28)``).
    """
    if isinstance(err, RepeatlensError):
        return None
    match = _ERRNO_IN_TEXT.search(str(err))
    if not isinstance(err, OSError) and match is None:
        return None
    code = err.errno if isinstance(err, OSError) and err.errno else (int(match.group(1)) if match else None)
    reason = os.strerror(code) if code else first_line(err)
    if code in _DISK_FULL:
        return DiskFullError(
            f"{path}: the disk is full ({reason}) while writing this file; its previous version, if any, is intact; "
            "free some space and run the same command again"
        )
    return WriteError(f"{path}: could not be written ({reason}); its previous version, if any, is intact")


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


@contextlib.contextmanager
def file_lock(path: str | Path, *, timeout: Optional[float] = None, on_wait: Optional[Callable[[str], Any]] = None) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the file ``path`` for the block.

    Every process that locks the same file waits for the others; the kernel releases the
    lock when its holder exits, however it exits, so a crash never leaves a folder locked.
    The lock file is created if missing and left in place afterwards (deleting it would let
    a waiter lock a file that later processes no longer see). It holds the holder's pid,
    for messages only. Where ``fcntl`` is missing (Windows) or the file system refuses
    locks (some network mounts), the block runs unlocked after a warning.

    Args:
        path: the lock file, e.g. ``run_dir / LOCK_FILE``.
        timeout: seconds to wait for another holder; None waits as long as it takes, 0 tries once.
        on_wait: called once, with a description of the holder (``"pid 1234"``), before waiting.

    Raises:
        LockTimeout: another process still held the lock after ``timeout`` seconds.
    """
    path = Path(path)
    if fcntl is None:
        warnings.warn(f"{path}: this platform has no fcntl; concurrent repeatlens processes are not kept apart", RuntimeWarning, stacklevel=3)
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # e.g. a read-only folder: its tables could not be written either
        raise (write_failure(path, e) or e) from e
    try:
        try:
            locked = _wait_for_lock(fd, path, timeout, on_wait)
        except OSError as e:  # ENOLCK, EOPNOTSUPP …: the file system has no flock
            warnings.warn(f"{path}: cannot lock ({os.strerror(e.errno or 0)}); going on unlocked", RuntimeWarning, stacklevel=3)
            locked = False
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _wait_for_lock(fd: int, path: Path, timeout: Optional[float], on_wait: Optional[Callable[[str], Any]]) -> bool:
    """Take the lock on ``fd`` (see :func:`file_lock`); True once held."""
    if _try_flock(fd):
        return True
    holder = _lock_holder(path)
    if timeout is not None and timeout <= 0:
        raise LockTimeout(f"{path}: locked by another repeatlens process ({holder})")
    if on_wait is not None:
        on_wait(holder)
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C still interrupts the wait
        return True
    deadline = time.monotonic() + timeout
    while not _try_flock(fd):
        if time.monotonic() >= deadline:
            raise LockTimeout(f"{path}: locked by another repeatlens process ({holder}) for over {timeout:g} s; try again once it has finished")
        time.sleep(0.05)
    return True


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock_holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def as_json(obj: Any) -> Any:
    """``obj`` as :func:`atomic_write_json` writes it and ``json`` reads it back (tuples as
    lists, numpy numbers as Python's, paths as strings): what a written record compares equal to."""
    return json.loads(json.dumps(obj, default=_json_default))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))

    atomic_write(path, write)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
