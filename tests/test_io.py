"""repeatlens.io: atomic writes that fail in one line and keep the previous file, folder locks.

The disk-full cases are monkeypatched: they raise exactly what the real writers raise on
ENOSPC (``OSError(28)`` from Python / numpy / pyarrow, safetensors' ``SafetensorError('...
(os error 28)')``) after writing part of the temporary file. The checkpoint-level failures
(a full disk mid-checkpoint, a real short write) are in tests/test_reliability.py.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from safetensors import SafetensorError

from repeatlens import io
from repeatlens.errors import DiskFullError, LockTimeout, WriteError

ENOSPC_TEXT = "Error while serializing: I/O error: No space left on device (os error 28)"


def _fail_after_half(exc: BaseException):
    """A writer that writes half of its bytes to the temporary file, then raises ``exc``."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 500)
        raise exc

    return write


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.ENOSPC, "No space left on device"), SafetensorError(ENOSPC_TEXT)],
    ids=["oserror", "safetensors"],
)
def test_disk_full_mid_write_keeps_the_previous_file_and_names_it(tmp_path: Path, exc: BaseException) -> None:
    target = tmp_path / "table.parquet"
    target.write_bytes(b"previous version")
    with pytest.raises(DiskFullError) as info:
        io.atomic_write(target, _fail_after_half(exc))
    msg = str(info.value)
    assert msg.startswith(f"{target}: the disk is full (No space left on device)") and "\n" not in msg
    assert target.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]  # no temporary left


def test_other_write_failures_are_one_line_too_and_programming_errors_pass_through(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(WriteError, match=r"x\.json: could not be written \(Permission denied\)") as info:
        io.atomic_write(target, _fail_after_half(PermissionError(errno.EACCES, "Permission denied")))
    assert not isinstance(info.value, DiskFullError)
    with pytest.raises(TypeError):  # not an I/O failure: not dressed up as one
        io.atomic_write(target, _fail_after_half(TypeError("bug")))
    assert list(tmp_path.iterdir()) == []



def test_atomic_writes_replace_whole_files_and_hash_them(tmp_path: Path) -> None:
    import hashlib

    import numpy as np

    target = tmp_path / "a.json"
    io.atomic_write_json(target, {"x": 1})
    io.atomic_write_json(target, {"x": 2, "y": [1, 2]})
    assert target.read_text().strip().startswith("{") and __import__("json").loads(target.read_text()) == {"x": 2, "y": [1, 2]}
    io.atomic_save_npy(tmp_path / "a.npy", np.arange(5))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3, 4]
    assert io.sha256_file(target) == hashlib.sha256(target.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npy"]  # no temporaries


# ------------------------------------------------------------------------------- locks


def test_file_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    """flock locks belong to an open file, so two opens in one process exclude each other."""
    lock, waited = tmp_path / io.LOCK_FILE, []
    with io.file_lock(lock):
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockTimeout, match=f"{lock}: locked by another repeatlens process \\(pid {os.getpid()}\\)$"):
            with io.file_lock(lock, timeout=0):
                pytest.fail("a second holder got in")
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match=r"for over 0\.2 s"):
            with io.file_lock(lock, timeout=0.2, on_wait=waited.append):
                pytest.fail("a second holder got in")
        assert time.monotonic() - t0 >= 0.2 and waited == [f"pid {os.getpid()}"]
    with io.file_lock(lock, timeout=0):  # released on leaving the block
        pass
    assert lock.exists()  # left in place on purpose


def test_file_lock_without_fcntl_warns_and_runs_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "fcntl", None)
    with pytest.warns(RuntimeWarning, match="no fcntl"):
        with io.file_lock(tmp_path / io.LOCK_FILE):
            with io.file_lock(tmp_path / io.LOCK_FILE):  # nothing to exclude with
                pass


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_open_would_give_them(tmp_path: Path, umask: int) -> None:
    """Issue 26, case 9: mkstemp's temporaries are 0600, and every file repeatlens wrote stayed so:
    a run shared on a cluster was unreadable by collaborators. Now 0666 less the umask, like open()."""
    old = os.umask(umask)
    try:
        assert io.current_umask() == umask
        io.atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o666 & ~umask
