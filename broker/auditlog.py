"""The broker's append-only, hash-chained audit log: who uploaded, who pulled, what was released
or rejected, and why.

Each entry's MAC is HMAC-SHA256 over the previous MAC and the entry's canonical JSON, under a key
derived from the broker's at-rest key, so an edited, inserted or removed entry breaks the chain
and cannot be re-chained without the key. The newest (sequence, MAC) is also written to a head
file beside the database after each commit, so removing entries from the end is detected too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.store import Database, now_iso
from fedsynth.files import atomic_write_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, detail_json TEXT NOT NULL, mac TEXT NOT NULL);
"""
GENESIS = "0" * 64
COLUMNS = "seq, at, actor, action, subject, detail_json, mac"
Row = Sequence[object]
"""An audit_log row: the values of COLUMNS, in that order."""


class AuditLogUnreadable(Exception):
    """The log could not be checked at all (unreadable database or head file): not evidence of
    tampering, so `audit-log verify` exits 2 rather than 1."""


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
        """Record that `actor` did `action` on `subject`; `detail` says how and why."""
        detail_json = json.dumps(detail, sort_keys=True, ensure_ascii=False, default=str)
        with self._lock:
            with self.db.transaction() as conn:
                last = conn.execute("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                row = last.fetchone()
                seq, previous = (row["seq"] + 1, row["mac"]) if row else (1, GENESIS)
                at = now_iso()
                mac = _mac(self._key, previous, seq, at, actor, action, subject, detail_json)
                conn.execute(
                    "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, at, actor, action, subject, detail_json, mac),
                )
            atomic_write_text(self.head_path, json.dumps({"seq": seq, "mac": mac}) + "\n")
        return AuditEntry(seq, at, actor, action, subject, detail, mac)

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
        rows = self.db.query(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq")
        return check_chain(self._key, [tuple(r) for r in rows], self.head_path)


def verify_database(
    database: Path, key: bytes, head_path: Path, key_name: str = "key"
) -> VerifyResult:
    """Verify the log in `database` without changing it: the file is opened read-only, so no
    table is created and the journal mode stays as found. AuditLogUnreadable if it cannot be read;
    `key_name` says where `key` came from, for the message when no entry verifies.
    """
    if not database.is_file():
        raise AuditLogUnreadable(f"{database}: no broker database there")
    try:
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "audit_log" not in tables:
                if not tables:
                    raise AuditLogUnreadable(
                        f"{database}: holds no tables (empty or truncated?); not a broker database"
                    )
                rows: list[Row] = []
                missing = [f"the audit_log table is missing from {database} (dropped?)"]
            else:
                rows = db.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq").fetchall()
                missing = []
    except sqlite3.Error as exc:
        raise AuditLogUnreadable(f"{database}: cannot read the database: {exc}") from exc
    result = check_chain(derive_log_key(key), rows, head_path, key_name)
    return VerifyResult(result.entries, (*missing, *result.problems))


def check_chain(
    log_key: bytes, rows: Sequence[Row], head_path: Path, key_name: str = "key"
) -> VerifyResult:
    """Recompute the chain of `rows` (in seq order) under `log_key`, then check the head file."""
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
    problems += _check_head(head_path, max(macs, default=0), macs)
    return VerifyResult(len(rows), tuple(problems))


def _check_head(head_path: Path, last_seq: int, macs: dict[int, object]) -> list[str]:
    """Compare the newest entry with the head file, which catches entries cut from the end."""
    if not head_path.exists():
        return [] if last_seq == 0 else [f"head file {head_path} is missing"]
    try:
        head = json.loads(head_path.read_text("utf-8"))
        seq, mac = head["seq"], head["mac"]
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(mac, str):
            raise TypeError("seq must be an integer and mac a string")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
        raise AuditLogUnreadable(
            f"head file {head_path}: not a valid audit head ({what}); expected "
            '{"seq": N, "mac": "..."}'
        ) from exc
    if seq > last_seq:
        return [f"entries {last_seq + 1}..{seq} were removed from the end of the log"]
    if macs.get(seq) != mac:
        return [f"entry {seq} does not match the head file"]
    return []
