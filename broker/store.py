"""The broker's durable state in SQLite (WAL): suppliers, jobs, tasks, uploads, candidates and
releases. One connection shared by the server threads, serialized by a lock."""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

SCHEMA = """
CREATE TABLE IF NOT EXISTS suppliers (
    name TEXT PRIMARY KEY, enrolled_at TEXT NOT NULL, last_contact TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, name TEXT NOT NULL, topology TEXT NOT NULL, state TEXT NOT NULL,
    spec_json BLOB NOT NULL, spec_sha256 TEXT NOT NULL, submitted_by TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS job_requests (
    submitted_by TEXT NOT NULL, request_id TEXT NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs(job_id), PRIMARY KEY (submitted_by, request_id));
CREATE TABLE IF NOT EXISTS release_withdrawals (
    release_id TEXT PRIMARY KEY REFERENCES releases(release_id), withdrawn_at TEXT NOT NULL,
    withdrawn_by TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(job_id),
    supplier TEXT NOT NULL, kind TEXT NOT NULL, payload_json BLOB NOT NULL,
    state TEXT NOT NULL, result_json BLOB, error TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_by_supplier ON tasks(supplier, state);
CREATE TABLE IF NOT EXISTS task_artifacts (
    task_id TEXT NOT NULL REFERENCES tasks(task_id), sha256 TEXT NOT NULL,
    PRIMARY KEY (task_id, sha256));
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, supplier TEXT NOT NULL, job_id TEXT NOT NULL,
    task_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, encrypted INTEGER NOT NULL, state TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_by_supplier ON uploads(supplier, state);
CREATE INDEX IF NOT EXISTS uploads_by_task ON uploads(task_id);
CREATE TABLE IF NOT EXISTS broker_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    candidate_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, verdict TEXT NOT NULL,
    reasons_json TEXT NOT NULL, dataset_sha256 TEXT NOT NULL, dataset_size INTEGER NOT NULL,
    report_sha256 TEXT NOT NULL, html_sha256 TEXT NOT NULL, release_id TEXT,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    release_id TEXT PRIMARY KEY, candidate_id TEXT NOT NULL REFERENCES candidates(candidate_id),
    job_id TEXT NOT NULL, name TEXT NOT NULL, dataset_sha256 TEXT NOT NULL,
    dataset_size INTEGER NOT NULL, report_sha256 TEXT NOT NULL, html_sha256 TEXT NOT NULL,
    topology TEXT NOT NULL, synthesizer TEXT NOT NULL, attestation_json BLOB NOT NULL,
    signature BLOB NOT NULL, broker_certificate_pem BLOB NOT NULL, created_at TEXT NOT NULL);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def age_s(stamp: str) -> float:
    """Seconds since the ISO-8601 `stamp` (as written by `now_iso`)."""
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)) / timedelta(seconds=1)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


ALL = -1
"""A listing's `limit` for every row (SQLite's LIMIT -1)."""
R = TypeVar("R")


@dataclass(frozen=True)
class Page(Generic[R]):
    """Some rows of a listing, and the row to list on after (None when these were the last)."""

    rows: list[R]
    next_after: int | None


@dataclass(frozen=True)
class JobRow:
    job_id: str
    name: str
    topology: str
    state: str
    spec_json: bytes
    spec_sha256: str
    submitted_by: str
    created_at: str
    updated_at: str
    reason: str


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    job_id: str
    supplier: str
    kind: str
    payload_json: bytes
    state: str
    artifacts: tuple[str, ...]
    result_json: bytes | None = None
    error: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class UploadRow:
    upload_id: str
    supplier: str
    job_id: str
    task_id: str
    name: str
    kind: str
    size: int
    sha256: str
    encrypted: bool
    state: str


@dataclass(frozen=True)
class CandidateRow:
    candidate_id: str
    job_id: str
    verdict: str
    reasons: tuple[str, ...]
    dataset_sha256: str
    release_id: str | None
    created_at: str


@dataclass(frozen=True)
class ReleaseRow:
    release_id: str
    candidate_id: str
    job_id: str
    name: str
    dataset_sha256: str
    dataset_size: int
    report_sha256: str
    html_sha256: str
    topology: str
    synthesizer: str
    attestation_json: bytes
    signature: bytes
    broker_certificate_pem: bytes
    created_at: str
    withdrawn_at: str | None = None
    withdrawn_by: str = ""
    withdrawn_reason: str = ""


class Database:
    """A SQLite connection in WAL mode shared between threads under one lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error). A
        transaction opened inside another (same thread) joins it: a change and the audit entry
        that records it commit together or not at all."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def create_tables(self, script: str) -> None:
        with self._lock:
            self._conn.executescript(script)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Store:
    """Typed access to the broker's tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._enrolled: frozenset[str] = frozenset()
        db.create_tables(SCHEMA)

    def key_fingerprint(self, fingerprint: str) -> str:
        """The at-rest key fingerprint this state was first opened with (`fingerprint` when
        none was recorded yet, which records it)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO broker_meta VALUES ('key_fingerprint', ?)", (fingerprint,)
            )
            row = conn.execute("SELECT value FROM broker_meta WHERE name = 'key_fingerprint'")
            return str(row.fetchone()["value"])

    # suppliers
    def enroll(self, names: list[str]) -> list[str]:
        """Make `names` the enrolled suppliers (the broker config's list): new ones are added,
        and suppliers known from before but not named are refused from now on; their rows stay
        for the record. Returns those withdrawn names."""
        with self.db.transaction() as conn:
            for name in names:
                conn.execute(
                    "INSERT OR IGNORE INTO suppliers(name, enrolled_at) VALUES (?, ?)",
                    (name, now_iso()),
                )
        self._enrolled = frozenset(names)
        return [name for name, _ in self.suppliers(withdrawn=True) if name not in self._enrolled]

    def is_enrolled(self, name: str) -> bool:
        return name in self._enrolled

    def touch_supplier(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE suppliers SET last_contact = ? WHERE name = ?", (now_iso(), name))

    def suppliers(self, *, withdrawn: bool = False) -> list[tuple[str, str | None]]:
        """(name, last contact) of the enrolled suppliers, and of withdrawn ones too when asked."""
        rows = self.db.query("SELECT name, last_contact FROM suppliers ORDER BY name")
        return [
            (r["name"], r["last_contact"]) for r in rows if withdrawn or r["name"] in self._enrolled
        ]

    # jobs
    def create_job(
        self, *, name: str, topology: str, spec_json: bytes, spec_sha256: str, submitted_by: str
    ) -> JobRow:
        return self.submit_job(
            name=name,
            topology=topology,
            spec_json=spec_json,
            spec_sha256=spec_sha256,
            submitted_by=submitted_by,
            request_id="",
        )[0]

    def submit_job(
        self,
        *,
        name: str,
        topology: str,
        spec_json: bytes,
        spec_sha256: str,
        submitted_by: str,
        request_id: str,
    ) -> tuple[JobRow, bool]:
        """A new submitted job and True; or, when `submitted_by` sent `request_id` before, the
        job that request created and False. Checked and created in one transaction, so a retry
        arriving while the first request is still being handled finds its job."""
        with self.db.transaction() as conn:
            if request_id:
                found = conn.execute(
                    "SELECT job_id FROM job_requests WHERE submitted_by = ? AND request_id = ?",
                    (submitted_by, request_id),
                ).fetchone()
                if found is not None:
                    return self.job(found["job_id"]), False
            job_id = new_id("job")
            stamp = now_iso()
            conn.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, 'submitted', ?, ?, ?, ?, ?, '')",
                (job_id, name, topology, spec_json, spec_sha256, submitted_by, stamp, stamp),
            )
            if request_id:
                conn.execute(
                    "INSERT INTO job_requests VALUES (?, ?, ?)", (submitted_by, request_id, job_id)
                )
        return self.job(job_id), True

    def job(self, job_id: str) -> JobRow:
        rows = self.db.query("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            raise KeyError(f"no job {job_id!r}")
        return JobRow(**dict(rows[0]))

    def jobs(self, state: str = "", *, after: int = 0, limit: int = ALL) -> Page[JobRow]:
        """Jobs (in `state` when given) in the order they were submitted, from `after` on."""
        where = ("state = ?", (state,)) if state else ("", ())
        rows, next_after = self._page("jobs", *where, after, limit)
        return Page([JobRow(**r) for r in rows], next_after)

    def set_job_state(self, job_id: str, state: str, reason: str = "") -> JobRow:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE job_id = ?",
                (state, reason, now_iso(), job_id),
            )
        return self.job(job_id)

    # tasks
    def add_task(
        self,
        job_id: str,
        supplier: str,
        kind: str,
        payload: dict[str, Any],
        artifacts: tuple[str, ...] = (),
        task_id: str | None = None,
    ) -> str:
        """Queue a task for a supplier; an existing `task_id` is left as it is (idempotent)."""
        task_id = task_id or new_id("task")
        stamp = now_iso()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?, 'pending', NULL, NULL, ?, ?)",
                (task_id, job_id, supplier, kind, json.dumps(payload).encode(), stamp, stamp),
            )
            for sha in artifacts:
                conn.execute("INSERT OR IGNORE INTO task_artifacts VALUES (?, ?)", (task_id, sha))
        return task_id

    def pending_tasks(self, supplier: str) -> list[TaskRow]:
        rows = self.db.query(
            "SELECT * FROM tasks WHERE supplier = ? AND state = 'pending' ORDER BY created_at",
            (supplier,),
        )
        return [self._task(r) for r in rows]

    def task(self, task_id: str) -> TaskRow:
        rows = self.db.query("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise KeyError(f"no task {task_id!r}")
        return self._task(rows[0])

    def _task(self, row: sqlite3.Row) -> TaskRow:
        shas = self.db.query(
            "SELECT sha256 FROM task_artifacts WHERE task_id = ?", (row["task_id"],)
        )
        return TaskRow(
            row["task_id"],
            row["job_id"],
            row["supplier"],
            row["kind"],
            row["payload_json"],
            row["state"],
            tuple(s["sha256"] for s in shas),
            row["result_json"],
            row["error"] or "",
            row["created_at"],
        )

    def tasks_of_job(self, job_id: str) -> list[TaskRow]:
        rows = self.db.query("SELECT * FROM tasks WHERE job_id = ? ORDER BY created_at", (job_id,))
        return [self._task(r) for r in rows]

    def finish_task(self, task_id: str, ok: bool, result_json: bytes, error: str) -> bool:
        """Record a result once; a repeated report of a finished task changes nothing."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET state = ?, result_json = ?, error = ?, updated_at = ? "
                "WHERE task_id = ? AND state = 'pending'",
                ("done" if ok else "failed", result_json, error, now_iso(), task_id),
            )
        return cursor.rowcount == 1

    def artifact_granted(self, supplier: str, sha256: str) -> bool:
        """Whether one of `supplier`'s tasks names artifact `sha256`."""
        return bool(
            self.db.query(
                "SELECT 1 FROM task_artifacts a JOIN tasks t ON a.task_id = t.task_id "
                "WHERE t.supplier = ? AND a.sha256 = ?",
                (supplier, sha256),
            )
        )

    # uploads
    def upload(self, upload_id: str) -> UploadRow | None:
        rows = self.db.query("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,))
        if not rows:
            return None
        row = dict(rows[0])
        row.pop("created_at")
        row.pop("updated_at")
        row["encrypted"] = bool(row["encrypted"])
        return UploadRow(**row)

    def create_upload(self, row: UploadRow) -> None:
        stamp = now_iso()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.upload_id,
                    row.supplier,
                    row.job_id,
                    row.task_id,
                    row.name,
                    row.kind,
                    row.size,
                    row.sha256,
                    int(row.encrypted),
                    row.state,
                    stamp,
                    stamp,
                ),
            )

    def set_upload_state(self, upload_id: str, state: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE uploads SET state = ?, updated_at = ? WHERE upload_id = ?",
                (state, now_iso(), upload_id),
            )

    def declare_upload_hash(self, upload_id: str, sha256: str) -> None:
        """Record the SHA-256 a sender declared after it began (on its final chunk)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE uploads SET sha256 = ?, updated_at = ? WHERE upload_id = ?",
                (sha256, now_iso(), upload_id),
            )

    def encrypted_holders(self, sha256: str) -> list[str]:
        """Ids of live (receiving or complete) encrypted uploads of the object `sha256`."""
        rows = self.db.query(
            "SELECT upload_id FROM uploads WHERE sha256 = ? AND encrypted = 1"
            " AND state IN ('receiving', 'complete')",
            (sha256,),
        )
        return [r["upload_id"] for r in rows]

    def open_uploads(self, supplier: str, excluding: str = "") -> tuple[int, int]:
        """(count, total declared bytes) of `supplier`'s unfinished uploads, `excluding` one
        (an upload begun again counts once): what the per-supplier upload limits bound."""
        rows = self.db.query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM uploads"
            " WHERE supplier = ? AND state = 'receiving' AND upload_id != ?",
            (supplier, excluding),
        )
        return int(rows[0]["n"]), int(rows[0]["bytes"])

    def task_upload_names(self, task_id: str) -> list[str]:
        """Names of the uploads begun or stored for task `task_id` (purged ones aside)."""
        rows = self.db.query(
            "SELECT name FROM uploads WHERE task_id = ? AND state IN ('receiving', 'complete')",
            (task_id,),
        )
        return [r["name"] for r in rows]

    def uploads_of_job(self, job_id: str) -> list[UploadRow]:
        ids = self.db.query("SELECT upload_id FROM uploads WHERE job_id = ?", (job_id,))
        return [u for r in ids if (u := self.upload(r["upload_id"])) is not None]

    # candidates and releases
    def add_candidate(
        self,
        *,
        job_id: str,
        verdict: str,
        reasons: list[str],
        dataset_sha256: str,
        dataset_size: int,
        report_sha256: str,
        html_sha256: str,
    ) -> str:
        candidate_id = new_id("cand")
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    candidate_id,
                    job_id,
                    verdict,
                    json.dumps(reasons),
                    dataset_sha256,
                    dataset_size,
                    report_sha256,
                    html_sha256,
                    now_iso(),
                ),
            )
        return candidate_id

    def candidates(
        self, job_id: str = "", *, after: int = 0, limit: int = ALL
    ) -> Page[CandidateRow]:
        """Candidates (of `job_id` when given) in the order they were made, from `after` on."""
        where = ("job_id = ?", (job_id,)) if job_id else ("", ())
        rows, next_after = self._page("candidates", *where, after, limit)
        return Page(
            [
                CandidateRow(
                    r["candidate_id"],
                    r["job_id"],
                    r["verdict"],
                    tuple(json.loads(r["reasons_json"])),
                    r["dataset_sha256"],
                    r["release_id"],
                    r["created_at"],
                )
                for r in rows
            ],
            next_after,
        )

    def add_release(self, row: ReleaseRow) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.release_id,
                    row.candidate_id,
                    row.job_id,
                    row.name,
                    row.dataset_sha256,
                    row.dataset_size,
                    row.report_sha256,
                    row.html_sha256,
                    row.topology,
                    row.synthesizer,
                    row.attestation_json,
                    row.signature,
                    row.broker_certificate_pem,
                    row.created_at,
                ),
            )
            conn.execute(
                "UPDATE candidates SET release_id = ? WHERE candidate_id = ?",
                (row.release_id, row.candidate_id),
            )

    def release(self, release_id: str) -> ReleaseRow | None:
        """The release, withdrawn or not (its `withdrawn_at` says)."""
        rows = self.db.query("SELECT * FROM releases WHERE release_id = ?", (release_id,))
        return self._withdrawals([dict(rows[0])])[0] if rows else None

    def releases(
        self, *, after: int = 0, limit: int = ALL, withdrawn: bool = True
    ) -> Page[ReleaseRow]:
        """Releases in the order they were published, from `after` on; without the withdrawn
        ones when `withdrawn` is false."""
        where = (
            "" if withdrawn else "release_id NOT IN (SELECT release_id FROM release_withdrawals)"
        )
        rows, next_after = self._page("releases", where, (), after, limit)
        return Page(self._withdrawals(rows), next_after)

    def is_withdrawn(self, release_id: str) -> bool:
        """Whether the release was withdrawn (one indexed lookup: asked before every chunk)."""
        return bool(
            self.db.query("SELECT 1 FROM release_withdrawals WHERE release_id = ?", (release_id,))
        )

    def withdraw_release(self, release_id: str, by: str, reason: str) -> ReleaseRow | None:
        """Withdraw the release once (a second withdrawal keeps the first); None if unknown."""
        with self.db.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM releases WHERE release_id = ?", (release_id,)
            ).fetchone():
                conn.execute(
                    "INSERT OR IGNORE INTO release_withdrawals VALUES (?, ?, ?, ?)",
                    (release_id, now_iso(), by, reason),
                )
        return self.release(release_id)

    def _withdrawals(self, rows: list[dict[str, Any]]) -> list[ReleaseRow]:
        """Release rows with their withdrawal, if any."""
        ids = [r["release_id"] for r in rows]
        found = {
            w["release_id"]: w
            for w in self.db.query(
                "SELECT * FROM release_withdrawals WHERE release_id IN "
                f"({','.join('?' * len(ids))})",
                tuple(ids),
            )
        }
        out = []
        for row in rows:
            w = found.get(row["release_id"])
            extra = (
                {
                    "withdrawn_at": w["withdrawn_at"],
                    "withdrawn_by": w["withdrawn_by"],
                    "withdrawn_reason": w["reason"],
                }
                if w is not None
                else {}
            )
            out.append(ReleaseRow(**row, **extra))
        return out

    def _page(
        self, table: str, where: str, params: tuple[Any, ...], after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `limit` rows of `table` (ALL: every one) inserted after row `after`, oldest
        first, and the row to continue after when more follow. Rows are never deleted, so
        insertion order is stable and a cursor stays valid while rows are added."""
        sql = f"SELECT rowid AS cursor_, * FROM {table} WHERE rowid > ?"
        if where:
            sql += f" AND {where}"
        sql += " ORDER BY rowid LIMIT ?"
        fetched = self.db.query(sql, (after, *params, limit + 1 if limit != ALL else ALL))
        rows = [dict(r) for r in fetched]
        more = limit != ALL and len(rows) > limit
        rows = rows[:limit] if more else rows
        cursors = [row.pop("cursor_") for row in rows]
        return rows, (cursors[-1] if more else None)
