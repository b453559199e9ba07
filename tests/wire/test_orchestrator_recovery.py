"""A pass of the job runner that fails on the broker's own storage (a full disk) does not end
the runner: it reports NOT_SERVING, retries, and goes back to SERVING and to the jobs."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.config import BrokerConfig
from broker.orchestrator import Orchestrator
from broker.state import BrokerState
from fedsynth.jobs import JobState
from tests.wire.broker_harness import job_spec, make_broker, stored_job


@dataclass
class HealthRecord:
    """What the job runner reported to the health service, and when it first said healthy."""

    states: list[bool] = field(default_factory=list)
    recovered: threading.Event = field(default_factory=threading.Event)

    def report(self, healthy: bool) -> None:
        self.states.append(healthy)
        if healthy:
            self.recovered.set()


def test_a_storage_error_marks_the_broker_unhealthy_until_a_pass_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = BrokerState.open(BrokerConfig.load(make_broker(tmp_path).config_path))
    spec = job_spec("kept")
    job = stored_job(state, spec).job_id
    failures = iter([True, True])
    real_jobs = state.store.jobs

    def jobs(*args: object) -> object:
        if next(failures, False):
            raise sqlite3.OperationalError("database or disk is full")
        return real_jobs(*args)

    monkeypatch.setattr(state.store, "jobs", jobs)
    health = HealthRecord()
    runner = Orchestrator(state, poll_s=0.05, on_health=health.report, retry_s=0.05)
    runner.start()
    try:
        assert health.recovered.wait(10)
        runner.stop()
        assert health.states == [False, True]
        assert state.store.job(job).state is not JobState.FAILED
    finally:
        runner.stop()
        state.close()


def test_a_broker_step_that_cannot_be_stored_is_retried_and_marks_the_broker_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broker steps run on workers of their own: a store error there (here: ending the job the
    step failed) leaves the job to be retried after retry_s, NOT_SERVING meanwhile."""
    state = BrokerState.open(BrokerConfig.load(make_broker(tmp_path).config_path))
    spec = job_spec("stored-later")
    job = stored_job(state, spec).job_id
    state.store.set_job_state(job, JobState.RUNNING)
    health = HealthRecord()
    runner = Orchestrator(state, poll_s=0.05, on_health=health.report, retry_s=0.05)
    with state.db.transaction() as conn:
        conn.execute(
            "INSERT INTO job_steps VALUES (?, 0, 'upload_raw', ?, '2026-01-01T00:00:00+00:00')",
            (job, '{"suppliers": {}, "missing": [], "refused": {}}'),
        )
    failures = iter([True, True])
    real_end = state.end_job

    def end_job(*args: object) -> object:
        if next(failures, False):
            raise sqlite3.OperationalError("database or disk is full")
        return real_end(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "end_job", end_job)
    runner.start()
    try:
        assert health.recovered.wait(10)
    finally:
        runner.stop()
    try:
        finished = state.store.job(job)
        assert finished.state == JobState.FAILED
        assert finished.reason.startswith("broker error:")
        assert health.states == [False, True]
    finally:
        state.close()
