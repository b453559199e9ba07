"""A pass of the job runner that fails on the broker's own storage (a full disk) does not end
the runner: it reports NOT_SERVING, retries, and goes back to SERVING and to the jobs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from broker.config import BrokerConfig
from broker.orchestrator import Orchestrator
from broker.state import BrokerState
from fedsynth.jobs import JobState
from tests.wire.broker_harness import job_spec, make_broker


def test_a_storage_error_marks_the_broker_unhealthy_until_a_pass_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = BrokerState.open(BrokerConfig.load(make_broker(tmp_path).config_path))
    spec = job_spec("kept")
    job = state.store.create_job(
        name=spec.name,
        topology=spec.topology.value,
        spec_json=spec.canonical_json(),
        spec_sha256=spec.spec_hash,
        submitted_by="spiffe://testfed/operator/ops",
    ).job_id
    failures = iter([True, True])
    real_jobs = state.store.jobs

    def jobs(*args: object) -> object:
        if next(failures, False):
            raise sqlite3.OperationalError("database or disk is full")
        return real_jobs(*args)

    monkeypatch.setattr(state.store, "jobs", jobs)
    health: list[bool] = []
    recovered = threading.Event()

    def report(healthy: bool) -> None:
        health.append(healthy)
        if healthy:
            recovered.set()

    runner = Orchestrator(state, poll_s=0.05, on_health=report, retry_s=0.05)
    runner.start()
    try:
        assert recovered.wait(10)
        runner.stop()
        assert health == [False, True]
        assert state.store.job(job).state is not JobState.FAILED
    finally:
        runner.stop()
        state.close()
