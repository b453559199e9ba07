"""Retention: the stored objects of jobs that ended long ago are deleted; releases are kept.

A broker that runs for months would otherwise keep every supplier's statistics, every merged
model, every unreleased local part and every rejected candidate. Every `retention.sweep_every_s`
the janitor marks what is live (each served release's dataset and reports, not a withdrawn
one's; every object an unfinished job, or a job that ended less than
`retention.keep_finished_days` ago, names in its uploads, grants, step results or candidates)
and deletes the other objects older than that. An object written after the oldest unfinished
job began is never deleted: a running step may hold it before its result names it. Job,
candidate and upload rows stay, for the record.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.state import BrokerState
from fedsynth.jobs import JobState

log = logging.getLogger(__name__)

STAGING_GRACE_S = 24 * 3600.0
"""Temporary files of an interrupted copy into the store are deleted after a day."""


@dataclass(frozen=True)
class Sweep:
    """What one pass deleted, and how many stored objects it kept."""

    deleted: int
    freed_bytes: int
    kept: int


def live_objects(state: BrokerState, cutoff: str) -> set[str]:
    """SHA-256 names every release, unfinished job or job that ended at or after `cutoff`
    (ISO time) still refers to."""
    db = state.db
    finished = [s.value for s in JobState if s.finished]
    marks = ",".join("?" * len(finished))
    recent = (
        f"SELECT job_id FROM jobs WHERE state NOT IN ({marks}) OR updated_at >= ?",
        (*finished, cutoff),
    )
    live: set[str] = set()
    for row in db.query(
        "SELECT dataset_sha256, report_sha256, html_sha256 FROM releases "
        "WHERE release_id NOT IN (SELECT release_id FROM release_withdrawals)"
    ):
        live.update(row)
    for sql in (
        "SELECT sha256 FROM uploads WHERE job_id IN ({jobs})",
        "SELECT dataset_sha256, report_sha256, html_sha256 FROM candidates "
        "WHERE job_id IN ({jobs})",
        "SELECT a.sha256 FROM task_artifacts a JOIN tasks t ON t.task_id = a.task_id "
        "WHERE t.job_id IN ({jobs})",
    ):
        for row in db.query(sql.format(jobs=recent[0]), recent[1]):
            live.update(v for v in row if v)
    for (result,) in db.query(
        f"SELECT result_json FROM job_steps WHERE job_id IN ({recent[0]})", recent[1]
    ):
        live.update(str(v) for v in json.loads(result).get("artifacts", {}).values())
    return live


def sweep(state: BrokerState, keep_finished_days: float, now: datetime | None = None) -> Sweep:
    """Delete the objects no release and no recent or unfinished job refers to."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=keep_finished_days)
    live = live_objects(state, cutoff.isoformat(timespec="milliseconds"))
    unfinished = [
        datetime.fromisoformat(job.created_at)
        for state_ in (JobState.SUBMITTED, JobState.RUNNING)
        for job in state.store.jobs(state_).rows
    ]
    written_before = min([cutoff, *unfinished]).timestamp()
    deleted = freed = kept = 0
    for path in sorted((state.artifacts.root / "sha256").glob("*/*")):
        name = path.name.removesuffix(".enc")
        stat = path.stat()
        if name in live or stat.st_mtime >= written_before:
            kept += 1
            continue
        path.unlink(missing_ok=True)
        deleted += 1
        freed += stat.st_size
    for path in (state.artifacts.root / "staging").glob("*.part"):
        if path.stat().st_mtime < now.timestamp() - STAGING_GRACE_S:
            path.unlink(missing_ok=True)
    if deleted:
        state.audit.append(
            state.config.uri,
            "artifacts.pruned",
            "retention",
            objects=deleted,
            bytes=freed,
            keep_finished_days=keep_finished_days,
        )
        log.info(
            "retention: deleted %d object(s), %d bytes, of jobs that ended over %s day(s) ago",
            deleted,
            freed,
            keep_finished_days,
        )
    return Sweep(deleted, freed, kept)


class Janitor:
    """Runs `sweep` every `every_s` seconds on a background thread, from start to stop."""

    def __init__(self, state: BrokerState, keep_finished_days: float, every_s: float) -> None:
        self.state = state
        self.keep_finished_days = keep_finished_days
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                sweep(self.state, self.keep_finished_days)
            except Exception:
                log.exception("retention sweep failed; trying again in %ss", self.every_s)
            else:
                log.debug("retention sweep took %.1fs", time.monotonic() - started)
            self._stop.wait(self.every_s)
