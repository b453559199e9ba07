"""Retention: the broker deletes the stored objects of jobs that ended long ago, keeps every
release and whatever an unfinished job may still use, and records what it deleted."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from broker.config import BrokerConfig
from broker.orchestrator import STEPS_SCHEMA
from broker.retention import sweep
from broker.state import BrokerState
from consumer_client import Client
from fedsynth.jobs import JobState
from fedsynth.security.principals import Role
from tests.wire.broker_harness import POLL_S, job_spec, make_broker, released, stored_job

LATER = datetime.now(UTC) + timedelta(days=40)
"""Sweeps below run as if 40 days had passed: jobs ended now are then past 30 days of retention."""


@pytest.fixture
def state(tmp_path: Path) -> Iterator[BrokerState]:
    opened = BrokerState.open(BrokerConfig.load(make_broker(tmp_path).config_path))
    opened.db.create_tables(STEPS_SCHEMA)
    yield opened
    opened.close()


def new_job(state: BrokerState, name: str, outcome: JobState | None) -> str:
    job = stored_job(state, job_spec(name)).job_id
    if outcome is not None:
        state.store.set_job_state(job, outcome, "retention test")
    return job


def step_result(state: BrokerState, job_id: str, **artifacts: str) -> None:
    with state.db.transaction() as conn:
        conn.execute(
            "INSERT INTO job_steps VALUES (?, 0, 'merge', ?, '2026-01-01T00:00:00+00:00')",
            (job_id, json.dumps({"artifacts": artifacts})),
        )


def publish_rows(state: BrokerState, job_id: str, data: bytes) -> str:
    return released(state, job_id, "kept", data).release_id


def stored(state: BrokerState, sha256: str) -> bool:
    return state.artifacts.has(sha256)


def test_objects_of_long_ended_jobs_go_and_releases_stay(state: BrokerState) -> None:
    ended = new_job(state, "ended", JobState.FAILED)
    model = state.artifacts.put_bytes(b"merged model of an ended job").sha256
    rejected = state.artifacts.put_bytes(b"rejected candidate rows").sha256
    step_result(state, ended, model=model)
    state.store.add_candidate(
        job_id=ended,
        verdict="fail",
        reasons=["fidelity too low"],
        dataset_sha256=rejected,
        dataset_size=23,
        report_sha256=model,
        html_sha256=model,
    )
    shipped = new_job(state, "shipped", JobState.SUCCEEDED)
    release = state.store.release(publish_rows(state, shipped, b"released rows"))
    assert release is not None
    orphan = state.artifacts.put_bytes(b"named by nothing").sha256

    result = sweep(state, keep_finished_days=30, now=LATER)

    assert not stored(state, model) and not stored(state, rejected) and not stored(state, orphan)
    for sha in (release.dataset_sha256, release.report_sha256, release.html_sha256):
        assert stored(state, sha)
    assert result.deleted == 3 and result.kept == 3
    pruned = [e for e in state.audit.entries() if e.action == "artifacts.pruned"]
    assert len(pruned) == 1 and pruned[0].detail["objects"] == 3
    assert state.store.candidates(ended).rows[0].reasons == ("fidelity too low",)


def test_recently_ended_and_unfinished_jobs_keep_their_objects(state: BrokerState) -> None:
    recent = new_job(state, "recent", JobState.CANCELLED)
    recent_model = state.artifacts.put_bytes(b"model of a job that just ended").sha256
    step_result(state, recent, model=recent_model)
    running = new_job(state, "running", JobState.RUNNING)
    running_model = state.artifacts.put_bytes(b"model of a running job").sha256
    step_result(state, running, model=running_model)

    sweep(state, keep_finished_days=30)

    assert stored(state, recent_model) and stored(state, running_model)


def test_an_object_written_while_a_job_runs_is_kept_until_a_result_can_name_it(
    state: BrokerState,
) -> None:
    old = state.artifacts.put_bytes(b"written before the job began").sha256
    day_ago = time.time() - 86400
    os.utime(state.artifacts.path(old), (day_ago, day_ago))
    ended = new_job(state, "old", JobState.FAILED)
    step_result(state, ended, model=old)
    new_job(state, "fitting", JobState.RUNNING)
    unnamed = state.artifacts.put_bytes(b"a running step's output, not recorded yet").sha256
    reused = state.artifacts.put_bytes(b"written before the job began").sha256

    sweep(state, keep_finished_days=30, now=LATER)

    assert reused == old and stored(state, old)
    assert stored(state, unnamed)


def test_a_running_broker_sweeps_on_its_own_and_releases_still_pull(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    config = yaml.safe_load(broker.config_path.read_text())
    config["retention"] = {"keep_finished_days": 0, "sweep_every_s": 0.2}
    broker.config_path.write_text(yaml.safe_dump(config))
    state = BrokerState.open(BrokerConfig.load(broker.config_path))
    try:
        state.db.create_tables(STEPS_SCHEMA)
        job = new_job(state, "swept", JobState.SUCCEEDED)
        model = state.artifacts.put_bytes(b"statistics nobody needs once released").sha256
        step_result(state, job, model=model)
        release_id = publish_rows(state, job, b"rows the analyst pulls")
    finally:
        state.close()
    broker.start()
    try:
        deadline = time.monotonic() + 30
        while (broker.state_dir / "artifacts" / "sha256" / model[:2] / model).exists():
            assert time.monotonic() < deadline, "the running broker never swept"
            time.sleep(POLL_S)
        with Client(broker.address, **broker.identity(Role.CONSUMER, "alice")) as client:
            client.pull_to(release_id, tmp_path / "pulled.parquet")
        assert (tmp_path / "pulled.parquet").read_bytes() == b"rows the analyst pulls"
    finally:
        broker.stop()


def test_a_withdrawn_release_is_deleted_with_its_long_ended_job(state: BrokerState) -> None:
    job = new_job(state, "withdrawn", JobState.SUCCEEDED)
    release = state.store.release(publish_rows(state, job, b"rows found to disclose"))
    assert release is not None
    state.store.withdraw_release(release.release_id, "spiffe://testfed/operator/ops", "leak")

    sweep(state, keep_finished_days=30, now=LATER)

    assert not stored(state, release.dataset_sha256)
