"""One broker per state folder: an exclusive lock held while a broker serves from it."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "broker.lock"


class StateInUseError(OSError):
    """Another broker process serves from this state folder."""


@dataclass
class StateLock:
    """An advisory lock on `state_dir/broker.lock`; the system drops it if the process dies."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Take the lock or raise StateInUseError naming the process that holds it."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateInUseError(
                f"state_dir {state_dir}: another broker (pid {holder}) serves from it; stop it "
                "first or give this broker its own state_dir"
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
