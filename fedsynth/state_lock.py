"""One process per state folder: an exclusive lock held while a broker or a supplier agent runs
from it, so that two never share a journal, a ledger or a task stream."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path


class StateInUseError(OSError):
    """Another process of the same role runs from this state folder."""


@dataclass
class StateLock:
    """An advisory lock on `state_dir/ROLE.lock`; the system drops it if the process dies."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, state_dir: Path, role: str) -> StateLock:
        """Take the lock of `role` (one word: broker, agent) on `state_dir`, or raise
        StateInUseError naming the process that holds it."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / f"{role}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateInUseError(
                f"state_dir {state_dir} is in use by another {role} (pid {holder}); stop it "
                f"first or give this {role} its own state_dir"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
