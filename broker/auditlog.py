"""The broker's append-only, hash-chained audit log: who uploaded, who pulled, what was released
or rejected, and why.

Each entry's MAC is HMAC-SHA256 over the previous MAC and the entry's canonical JSON, under a key
derived from the broker's at-rest key, so an edited, inserted or removed entry breaks the chain
and cannot be re-chained without the key. The newest (sequence, MAC) is also written to a head
file beside the database after each commit, so removing entries from the end is detected too.
A check reads the head before the rows: the head only ever names a committed entry, so on a live
broker it can lag the rows read after it but never run ahead of them (no false "removed").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from broker.store import Database, now_iso
from fedsynth.files import atomic_write_text
from fedsynth.security.atrest import key_fingerprint

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, detail_json TEXT NOT NULL, mac TEXT NOT NULL);
"""
GENESIS = "0" * 64
MAX_DETAIL_CHARS = 16 * 1024
DETAIL_START_CHARS = 1024
HEAD_GRACE_S = 1.0
"""How long a check that found rows but no head file waits for the first entry's head."""
HEAD_POLL_S = 0.01
"""How often it looks meanwhile: the head is written by the broker's process, so there is no
event to wait on."""
COLUMNS = "seq, at, actor, action, subject, detail_json, mac"
Row = Sequence[object]
"""An audit_log row: the values of COLUMNS, in that order."""


class AuditLogUnreadable(Exception):
    """The log could not be checked at all (unreadable database or head file): not evidence of
    tampering, so `audit-log verify` exits 2 rather than 1."""


class AuditLogGone(Exception):
    """The database is readable but its audit_log table is missing: evidence of tampering, so
    `audit-log show` exits 1, as `verify` does."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    mac: str


@dataclass(frozen=True)
class Head:
    """The head file's content: the newest entry's sequence number and MAC when it was written."""

    seq: int
    mac: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `AuditLog.verify`: entries checked and every problem found."""

    entries: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def derive_log_key(at_rest_key: bytes) -> bytes:
    return hmac.new(at_rest_key, b"fedsynth audit log v1", hashlib.sha256).digest()


def _mac(
    key: bytes,
    previous: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    detail_json: str,
) -> str:
    body = json.dumps([previous, seq, at, actor, action, subject, detail_json], ensure_ascii=False)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


class AuditLog:
    """Append and verify entries in the `audit_log` table of the broker database."""

    def __init__(self, db: Database, key: bytes, head_path: str | Path) -> None:
        self.db = db
        self._key = derive_log_key(key)
        self.head_path = Path(head_path)
        self._lock = threading.Lock()
        db.create_tables(SCHEMA)

    def append(self, actor: str, action: str, subject: str, **detail: Any) -> AuditEntry:
        """Record that `actor` did `action` on `subject`; `detail` says how and why.

        A detail longer than MAX_DETAIL_CHARS is kept as its start and its length: the log is
        read and verified whole, and peers must not be able to grow it without bound.
        """
        with self._lock:
            with self.db.transaction() as conn:
                entry = self._insert(conn, actor, action, subject, detail)
            self._write_head(entry.seq, entry.mac)
        return entry

    def append_within(
        self, conn: sqlite3.Connection, actor: str, action: str, subject: str, **detail: Any
    ) -> AuditEntry:
        """As `append`, inside the caller's open transaction, so the entry commits or rolls back
        with the change it records (a crash between the two lost the entry); call `sync_head`
        once that transaction has committed."""
        return self._insert(conn, actor, action, subject, detail)

    def sync_head(self) -> None:
        """Point the head file at the newest entry (after `append_within`'s transaction)."""
        with self._lock:
            row = self.db.query("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
            if row:
                self._write_head(row[0]["seq"], row[0]["mac"])

    def _insert(
        self,
        conn: sqlite3.Connection,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
    ) -> AuditEntry:
        detail_json = json.dumps(detail, sort_keys=True, ensure_ascii=False, default=str)
        if len(detail_json) > MAX_DETAIL_CHARS:
            detail = {"cut": len(detail_json), "start": detail_json[:DETAIL_START_CHARS]}
            detail_json = json.dumps(detail, sort_keys=True, ensure_ascii=False)
        last = conn.execute("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
        row = last.fetchone()
        seq, previous = (row["seq"] + 1, row["mac"]) if row else (1, GENESIS)
        at = now_iso()
        mac = _mac(self._key, previous, seq, at, actor, action, subject, detail_json)
        conn.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, at, actor, action, subject, detail_json, mac),
        )
        return AuditEntry(seq, at, actor, action, subject, detail, mac)

    def _write_head(self, seq: int, mac: str) -> None:
        atomic_write_text(self.head_path, json.dumps({"seq": seq, "mac": mac}) + "\n")

    def entries(self) -> list[AuditEntry]:
        rows = self.db.query("SELECT * FROM audit_log ORDER BY seq")
        return [
            AuditEntry(
                r["seq"],
                r["at"],
                r["actor"],
                r["action"],
                r["subject"],
                json.loads(r["detail_json"]),
                r["mac"],
            )
            for r in rows
        ]

    def verify(self) -> VerifyResult:
        """Recompute the chain and compare it with the head file; list every break found."""

        def rows() -> list[Row]:
            return [
                tuple(r) for r in self.db.query(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq")
            ]

        head, read = read_head_then_rows(self.head_path, rows)
        return check_chain(self._key, read or [], head, self.head_path)


@contextmanager
def read_only(database: Path) -> Iterator[sqlite3.Connection]:
    """`database` opened read-only, so no table is created and the journal mode stays as found;
    AuditLogUnreadable (naming the file) if it is missing, empty or not SQLite."""
    if not database.is_file():
        raise AuditLogUnreadable(f"{database}: no broker database there")
    try:
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                raise AuditLogUnreadable(
                    f"{database}: holds no tables (empty or truncated?); not a broker database"
                )
            yield db
    except sqlite3.Error as exc:
        raise AuditLogUnreadable(f"{database}: cannot read the database: {exc}") from exc


def _has_log(db: sqlite3.Connection) -> bool:
    """Whether `db` has the audit_log table (a broker creates it on start)."""
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_log'").fetchone()
        is not None
    )


def verify_database(
    database: Path, key: bytes, head_path: Path, key_name: str = "key"
) -> VerifyResult:
    """Verify the log in `database` without changing it (opened read-only), safe to run beside a
    live broker. AuditLogUnreadable if it cannot be read; `key_name` says where `key` came from,
    for the message when no entry verifies.
    """
    if not database.is_file():  # checked before the head is read: the more useful message
        raise AuditLogUnreadable(f"{database}: no broker database there")

    def rows() -> list[Row] | None:
        with read_only(database) as db:
            if not _has_log(db):
                return None
            return db.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq").fetchall()

    with read_only(database) as db:
        recorded = _recorded_fingerprint(db)
    if recorded is not None and recorded != key_fingerprint(key):
        raise AuditLogUnreadable(
            f"{key_name} is not the key of this broker's state: its fingerprint differs from the "
            f"one {database} records; give the broker's own key file"
        )
    head, read = read_head_then_rows(head_path, rows)
    missing = (
        [] if read is not None else [f"the audit_log table is missing from {database} (dropped?)"]
    )
    result = check_chain(derive_log_key(key), read or [], head, head_path, key_name)
    return VerifyResult(result.entries, (*missing, *result.problems))


def _recorded_fingerprint(db: sqlite3.Connection) -> str | None:
    """The at-rest key fingerprint the broker recorded (None in a state from before)."""
    try:
        row = db.execute("SELECT value FROM broker_meta WHERE name = 'key_fingerprint'").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def read_head_then_rows(
    head_path: Path, read_rows: Callable[[], list[Row] | None]
) -> tuple[Head | None, list[Row] | None]:
    """The head file, then the rows (None: no audit_log table), in that order: `append` writes
    the head after its row commits, so a head read first never names an entry the rows read after
    it lack. With no head but some rows, the first entry may have committed and its head not be
    written yet: wait up to HEAD_GRACE_S for the head, and read both again if it comes."""
    head = read_head(head_path)
    rows = read_rows()
    if head is None and rows:
        deadline = time.monotonic() + HEAD_GRACE_S
        while not head_path.exists() and time.monotonic() < deadline:
            time.sleep(HEAD_POLL_S)
        if head_path.exists():
            head = read_head(head_path)
            rows = read_rows()
    return head, rows


def read_head(head_path: Path) -> Head | None:
    """The head file's (seq, MAC); None if there is none. AuditLogUnreadable if it is damaged."""
    try:
        head = json.loads(head_path.read_text("utf-8"))
        seq, mac = head["seq"], head["mac"]
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(mac, str):
            raise TypeError("seq must be an integer and mac a string")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
        raise AuditLogUnreadable(
            f"head file {head_path}: not a valid audit head ({what}); expected "
            '{"seq": N, "mac": "..."}'
        ) from exc
    return Head(seq, mac)


@dataclass(frozen=True)
class EntryFilter:
    """Which entries `audit-log show` prints: those meeting every condition given."""

    job: str | None = None
    """A job id: entries whose subject it is, or whose detail names it as job_id (its tasks,
    uploads, candidates and releases)."""
    subject: str | None = None
    action: str | None = None
    """An action, or a pattern of one: `*` and `?` match any text, e.g. `job.*`."""
    since: datetime | None = None
    """Timezone-aware; entries at or after it."""

    def matches(self, entry: AuditEntry) -> bool:
        """Whether `entry` meets every condition given."""
        if self.subject is not None and entry.subject != self.subject:
            return False
        if self.job is not None and self.job not in (entry.subject, entry.detail.get("job_id")):
            return False
        if self.action is not None and not fnmatchcase(entry.action, self.action):
            return False
        return self.since is None or _at_or_after(entry.at, self.since)


def read_entries(
    database: Path, which: EntryFilter = EntryFilter(), last: int | None = None
) -> list[AuditEntry]:
    """The entries in `database` that `which` selects, oldest first, only the newest `last` if
    given. Opened read-only like `verify_database`, and the chain is not checked (that is what
    verify is for): values of the wrong type in a tampered row are shown as text, not a crash.
    AuditLogUnreadable if the file cannot be read; AuditLogGone if it has no audit_log table.
    """
    selected: deque[AuditEntry] = deque(maxlen=last)
    with read_only(database) as db:
        if not _has_log(db):
            raise AuditLogGone(
                f"the audit_log table is missing from {database} (dropped?); "
                "`fedsynth-broker audit-log verify` reports what else is wrong"
            )
        db.text_factory = lambda raw: raw.decode("utf-8", "replace")
        text = ", ".join(f"COALESCE(CAST({c} AS TEXT), '')" for c in COLUMNS.split(", ")[1:])
        rows = db.execute(
            f"SELECT COALESCE(CAST(seq AS INTEGER), 0), {text} FROM audit_log ORDER BY seq"
        )
        for seq, at, actor, action, subject, detail_json, mac in rows:
            entry = AuditEntry(seq, at, actor, action, subject, _detail(detail_json), mac)
            if which.matches(entry):
                selected.append(entry)
    return list(selected)


def _detail(detail_json: str) -> dict[str, Any]:
    """An entry's detail object; text that is not a JSON object (a tampered row) is kept, under
    the name of its column, so it is still shown."""
    try:
        detail = json.loads(detail_json)
    except ValueError:
        detail = None
    return detail if isinstance(detail, dict) else {"detail_json": detail_json}


def _at_or_after(at: str, since: datetime) -> bool:
    """Whether the entry time `at` (ISO-8601, UTC unless it says otherwise) is not before
    `since`; a time that does not parse (a tampered row) is not."""
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


def check_chain(
    log_key: bytes,
    rows: Sequence[Row],
    head: Head | None,
    head_path: Path,
    key_name: str = "key",
) -> VerifyResult:
    """Recompute the chain of `rows` (in seq order) under `log_key`, then compare the newest with
    `head`, read from `head_path` before the rows (`read_head_then_rows`)."""
    problems: list[str] = []
    previous, expected_seq = GENESIS, 1
    macs: dict[int, object] = {}
    altered: list[int] = []
    for seq, at, actor, action, subject, detail_json, stored in rows:
        if isinstance(seq, bool) or not isinstance(seq, int):
            problems.append(f"an entry has seq {seq!r}, not an integer: the table was rebuilt")
            continue
        if seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (next entry is {seq})")
        intact = all(
            isinstance(v, str) for v in (at, actor, action, subject, detail_json, stored)
        ) and hmac.compare_digest(
            _mac(log_key, previous, seq, at, actor, action, subject, detail_json).encode(),
            str(stored).encode(),
        )
        if not intact:
            altered.append(seq)
        macs[seq] = stored
        previous, expected_seq = str(stored), seq + 1
    if macs and len(altered) == len(macs):
        problems.append(
            f"entry {altered[0]} does not verify, nor does any later entry: the likely cause is "
            f"the wrong {key_name} (or else every entry was rewritten)"
        )
    else:
        problems += [f"entry {seq} was altered (MAC does not match the chain)" for seq in altered]
    problems += _check_head(head, head_path, max(macs, default=0), macs)
    return VerifyResult(len(rows), tuple(problems))


def _check_head(
    head: Head | None, head_path: Path, last_seq: int, macs: dict[int, object]
) -> list[str]:
    """Compare the newest entry with the head, which catches entries cut from the end."""
    if head is None:
        return [] if last_seq == 0 else [f"head file {head_path} is missing"]
    if head.seq > last_seq:
        return [f"entries {last_seq + 1}..{head.seq} were removed from the end of the log"]
    if macs.get(head.seq) != head.mac:
        return [f"entry {head.seq} does not match the head file"]
    return []
