"""Writes to the broker's state that failed on a call's path (a full or read-only disk).

Calls that hit one answer UNAVAILABLE, so peers retry later instead of reading a raw error,
and the broker reports NOT_SERVING until no fault has been seen for `window_s`.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
WINDOW_S = 30.0
LOG_EVERY_S = 60.0


def is_storage_fault(exc: BaseException) -> bool:
    """Whether `exc` says the state could not be written (not that a request was wrong)."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


class StorageFaults:
    """When a call last failed to write the state, logged at most once a minute."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._guard = threading.Lock()
        self._last = float("-inf")
        self._logged = float("-inf")

    def note(self, exc: BaseException, where: str) -> None:
        """A call failed to write: NOT_SERVING for the window, and a log line (rate-limited)."""
        with self._guard:
            self._last = time.monotonic()
        self.log(exc, where)

    def log(self, exc: BaseException, where: str) -> None:
        """Log a failed write at most once a minute (the job runner keeps its own health)."""
        now = time.monotonic()
        with self._guard:
            quiet = now - self._logged < LOG_EVERY_S
            if not quiet:
                self._logged = now
        if not quiet:
            log.error(
                "cannot write the broker's state (%s: %s); calls answer UNAVAILABLE", where, exc
            )

    def recent(self) -> bool:
        """Whether a fault was seen within the window."""
        with self._guard:
            return time.monotonic() - self._last < self.window_s
