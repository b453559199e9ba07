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
import threading
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
        rows = self.db.query("SELECT * FROM audit_log ORDER BY seq")
        problems: list[str] = []
        previous, expected_seq = GENESIS, 1
        for r in rows:
            if r["seq"] != expected_seq:
                problems.append(f"entry {expected_seq} is missing (next entry is {r['seq']})")
            mac = _mac(
                self._key,
                previous,
                r["seq"],
                r["at"],
                r["actor"],
                r["action"],
                r["subject"],
                r["detail_json"],
            )
            if not hmac.compare_digest(mac, r["mac"]):
                problems.append(f"entry {r['seq']} was altered (MAC does not match the chain)")
            previous, expected_seq = r["mac"], r["seq"] + 1
        problems += self._check_head(
            rows[-1]["seq"] if rows else 0, {r["seq"]: r["mac"] for r in rows}
        )
        return VerifyResult(len(rows), tuple(problems))

    def _check_head(self, last_seq: int, macs: dict[int, str]) -> list[str]:
        if not self.head_path.exists():
            return [] if last_seq == 0 else [f"head file {self.head_path} is missing"]
        head = json.loads(self.head_path.read_text("utf-8"))
        if head["seq"] > last_seq:
            return [f"entries {last_seq + 1}..{head['seq']} were removed from the end of the log"]
        if macs.get(head["seq"]) != head["mac"]:
            return [f"entry {head['seq']} does not match the head file"]
        return []
