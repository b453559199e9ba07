"""The agent's task journal: a task id seen before returns its recorded result, never reruns."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class TaskJournal:
    """Results of finished tasks by task id, in SQLite (WAL) so they survive a restart."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL,"
            " ok INTEGER NOT NULL, result BLOB NOT NULL, finished_at TEXT NOT NULL"
            " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )
        self._lock = threading.Lock()

    def result(self, task_id: str) -> tuple[bool, bytes] | None:
        """(ok, result) recorded for `task_id`, or None when the task is new."""
        with self._lock:
            row = self._db.execute(
                "SELECT ok, result FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        return None if row is None else (bool(row[0]), bytes(row[1]))

    def record(self, task_id: str, job_id: str, ok: bool, result: bytes) -> tuple[bool, bytes]:
        """Store a task's result once; a second record of the same id keeps the first."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO tasks (task_id, job_id, ok, result) VALUES (?, ?, ?, ?)",
                (task_id, job_id, int(ok), result),
            )
            kept_ok, kept = self._db.execute(
                "SELECT ok, result FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        return bool(kept_ok), bytes(kept)

    def close(self) -> None:
        self._db.close()
