"""`audit-log verify` beside a broker that is appending: no false alarm on an intact log (the
head file is read before the rows, so it can lag them but never run ahead), while entries cut
from the end are still caught."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.auditlog import AuditLog, Row, VerifyResult, read_head_then_rows, verify_database
from broker.store import Database, Store
from fedsynth.security.atrest import create_key_file

ACTOR = "spiffe://health-eu/broker/main"
RUN_S = 4.0
"""How long verify is repeated while the appender runs."""


@dataclass
class LiveLog:
    """A broker state dir whose audit log is appended to through its own connection, as the
    broker process appends while an operator runs `audit-log verify`."""

    state: Path
    key: bytes
    log: AuditLog

    @property
    def database(self) -> Path:
        return self.state / "broker.sqlite3"

    @property
    def head(self) -> Path:
        return self.state / "audit-head.json"

    def verify(self) -> VerifyResult:
        """What `fedsynth-broker audit-log verify` computes."""
        return verify_database(self.database, self.key, self.head)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveLog]:
    state = tmp_path / "state"
    state.mkdir()
    create_key_file(state / "at-rest.key")
    key = (state / "at-rest.key").read_bytes()
    db = Database(state / "broker.sqlite3")
    Store(db)
    yield LiveLog(state, key, AuditLog(db, key, state / "audit-head.json"))
    db.close()


@contextmanager
def appending(log: AuditLog) -> Iterator[list[int]]:
    """Append entries in a loop on another thread until the block ends; yields the count."""
    count = [0]
    stop = threading.Event()
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                log.append(ACTOR, "job.step", f"job-{count[0] % 7}", step="fit", n=count[0])
                count[0] += 1
        except BaseException as exc:  # surfaced in the test thread below
            failed.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failed, failed


def _repeat(check: Callable[[], VerifyResult]) -> tuple[int, list[str]]:
    """Run `check` for RUN_S seconds; the number of runs and every problem any run reported."""
    runs, alarms = 0, []
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline:
        alarms += check().problems
        runs += 1
    return runs, alarms


def test_verify_beside_a_live_appender_raises_no_false_alarm(live: LiveLog) -> None:
    with appending(live.log) as appended:
        runs, alarms = _repeat(live.verify)
    assert alarms == [], f"{len(alarms)} false alarms in {runs} runs, e.g. {alarms[:3]}"
    assert runs >= 50 and appended[0] >= 100, (runs, appended[0])
    assert live.verify().ok


def test_in_process_verify_beside_a_live_appender_raises_no_false_alarm(live: LiveLog) -> None:
    reader = AuditLog(Database(live.database), live.key, live.head)
    try:
        with appending(live.log):
            runs, alarms = _repeat(reader.verify)
    finally:
        reader.db.close()
    assert alarms == [], f"{len(alarms)} false alarms in {runs} runs, e.g. {alarms[:3]}"


def test_verify_from_the_very_first_entry_on_raises_no_false_alarm(live: LiveLog) -> None:
    """Before the first append there is no head file: a check that found none, then read the
    first rows, must not call the head missing."""
    for _ in range(100):
        live.head.unlink(missing_ok=True)
        with live.log.db.transaction() as conn:
            conn.execute("DELETE FROM audit_log")
        with appending(live.log):
            problems = live.verify().problems
        assert problems == ()


def test_an_append_between_the_head_and_the_rows_is_no_alarm(live: LiveLog) -> None:
    """The exact interleaving that raised 'entries N..N were removed': an entry committed and
    its head written while verify was reading."""
    for i in range(3):
        live.log.append(ACTOR, "job.step", "job-1", n=i)

    def rows_after_an_append() -> list[Row]:
        live.log.append(ACTOR, "job.step", "job-1", n=99)
        with sqlite3.connect(live.database) as db:
            return db.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()

    head, rows = read_head_then_rows(live.head, rows_after_an_append)
    assert head is not None and head.seq == 3 and rows is not None and len(rows) == 4
    assert live.verify().ok


def test_the_first_head_written_while_reading_is_read_again(live: LiveLog) -> None:
    calls = []

    def rows_after_the_first_append() -> list[Row]:
        if not calls:
            live.log.append(ACTOR, "broker.started", "127.0.0.1:7443")
        calls.append(1)
        with sqlite3.connect(live.database) as db:
            return db.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()

    head, rows = read_head_then_rows(live.head, rows_after_the_first_append)
    assert len(calls) == 2 and head is not None and head.seq == 1
    assert rows is not None and len(rows) == 1


@pytest.mark.parametrize("cut", [1, 3])
def test_entries_removed_from_the_end_are_still_caught(live: LiveLog, cut: int) -> None:
    last = 20
    for i in range(last):
        live.log.append(ACTOR, "job.step", "job-1", n=i)
    with sqlite3.connect(live.database) as db:
        db.execute("DELETE FROM audit_log WHERE seq > ?", (last - cut,))
    assert live.verify().problems == (
        f"entries {last - cut + 1}..{last} were removed from the end of the log",
    )


def test_a_missing_head_file_is_still_caught(live: LiveLog) -> None:
    for i in range(3):
        live.log.append(ACTOR, "job.step", "job-1", n=i)
    live.head.unlink()
    assert live.verify().problems == (f"head file {live.head} is missing",)
