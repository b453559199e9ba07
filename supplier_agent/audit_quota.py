"""How many candidates this site audits against its rows.

An audit compares a candidate the broker chose with the site's real rows, and its verdict says
whether the candidate is too close to them: a compromised broker could send a candidate made of
one guessed record and read from the verdict whether that person is in the site's data. The site
bounds that oracle: at most a few audits per job and per day. The count survives restarts, and
a task audited again after a restart is not counted twice.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY = timedelta(days=1)


class AuditQuotaExceeded(RuntimeError):
    """This audit would pass the site's limit on audits per job or per day."""


class AuditQuota:
    """The audits this site has run, by task, job and time, in SQLite."""

    def __init__(self, path: str | Path, *, per_job: int, per_day: int) -> None:
        self.path = Path(path)
        self.per_job = per_job
        self.per_day = per_day
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS audits (task_id TEXT PRIMARY KEY, job_id TEXT NOT "
                "NULL, candidate_sha256 TEXT NOT NULL, started_at TEXT NOT NULL)"
            )

    def admit(self, task_id: str, job_id: str, candidate_sha256: str) -> None:
        """Record the audit of `task_id`, or raise AuditQuotaExceeded and record nothing."""
        now = datetime.now(UTC)
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._admit(db, task_id, job_id, candidate_sha256, now)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _admit(
        self, db: sqlite3.Connection, task_id: str, job_id: str, sha256: str, now: datetime
    ) -> None:
        known = db.execute("SELECT 1 FROM audits WHERE task_id = ?", (task_id,)).fetchone()
        if known is not None:
            return
        (in_job,) = db.execute("SELECT COUNT(*) FROM audits WHERE job_id = ?", (job_id,)).fetchone()
        if in_job >= self.per_job:
            raise AuditQuotaExceeded(
                f"this site has already audited {in_job} candidate(s) of job {job_id!r}, its "
                f"limit per job (egress.max_audits_per_job: {self.per_job}); raise it in the "
                "agent config if the job needs more"
            )
        since = (now - DAY).isoformat()
        (today,) = db.execute(
            "SELECT COUNT(*) FROM audits WHERE started_at > ?", (since,)
        ).fetchone()
        if today >= self.per_day:
            raise AuditQuotaExceeded(
                f"this site has audited {today} candidates in the last 24 hours, its limit "
                f"(egress.max_audits_per_day: {self.per_day}); try again later or raise the "
                "limit in the agent config"
            )
        db.execute(
            "INSERT INTO audits VALUES (?, ?, ?, ?)", (task_id, job_id, sha256, now.isoformat())
        )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        return db
