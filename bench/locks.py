"""One writer per run folder: an OS file lock (flock) on the run folder itself, which the kernel
releases when the holder dies, however it dies (SIGKILL included): a lock is never left stale,
and no lock file is left in the folder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from bench.errors import GanbenchError


class RunLocked(GanbenchError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Holds the lock of one run folder until release() (or the process ends)."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir = run_dir
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def try_lock(run_dir: Path) -> RunLock | None:
    """The folder's lock, or None when another process holds it (never waits)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return RunLock(run_dir, fd)
