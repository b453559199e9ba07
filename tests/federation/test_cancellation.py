"""A broker step in progress ends when its job is cancelled or runs out of time, and when the
broker is told to stop; the orchestrator is then free for other jobs, and a step stopped by a
shutdown runs again after the restart."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from fedsynth.jobs import JobSpec
from tests.federation.harness import SUPPLIERS, Federation, job, make_federation
from tests.federation.test_recovery import finished_steps, wait_for

ENDLESS_FIT = {"name": "tvae", "params": {"epochs": 10**8, "batch_size": 16}}
"""A fit that would outlast any test run by far: every check here needs it stopped."""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A federation of its own: a step that does not stop must not hold up other modules."""
    federation = make_federation(tmp_path_factory.mktemp("cancellation"), strict=False)
    federation.broker.start()
    for agent in federation.agents.values():
        agent.start()
    try:
        yield federation
    finally:
        federation.stop()


def broker_log(fed: Federation) -> str:
    return (fed.broker.root / "broker.log").read_text()


def endless_job(name: str, **extra: Any) -> JobSpec:
    return job(name, "central", SUPPLIERS, synthesizer=ENDLESS_FIT, **extra)


def fits_started(fed: Federation, job_id: str) -> int:
    """How many times the broker has started the job's central fit (restarts count again)."""
    return broker_log(fed).count(f"job {job_id}: step synthesize_centrally started")


def stopped(fed: Federation, job_id: str, why: str) -> bool:
    return f"job {job_id}: step synthesize_centrally stopped: {why}" in broker_log(fed)


def test_cancelling_a_job_stops_its_fit_and_frees_the_broker_for_the_next_job(
    fed: Federation,
) -> None:
    endless = fed.submit(endless_job("endless"))
    wait_for(lambda: fits_started(fed, endless) == 1)
    with fed.operator() as ops:
        ops.cancel(endless)
    wait_for(lambda: stopped(fed, endless, "the job is cancelled"), timeout=60)
    quick = fed.submit(job("after-cancel", "central", SUPPLIERS))
    assert fed.wait(quick).state == "succeeded"
    assert fed.wait(endless).state == "cancelled"
    assert finished_steps(fed, endless) == ["upload_raw"]
    with fed.operator() as ops:
        assert [r.job_id for r in ops.releases()] == [quick]


def test_a_long_fit_does_not_hold_up_the_steps_of_other_jobs(fed: Federation) -> None:
    endless = fed.submit(endless_job("long-fit"))
    wait_for(lambda: fits_started(fed, endless) == 1)
    quick = fed.submit(job("beside-a-long-fit", "central", SUPPLIERS))
    assert fed.wait(quick).state == "succeeded"
    with fed.operator() as ops:
        assert ops.status(endless).state == "running"
        ops.cancel(endless)
    wait_for(lambda: stopped(fed, endless, "the job is cancelled"), timeout=60)


def test_a_fit_running_past_the_job_time_limit_fails_the_job(fed: Federation) -> None:
    endless = fed.submit(endless_job("overdue", timeouts={"job_s": 10}))
    finished = fed.wait(endless, timeout=90)
    assert fits_started(fed, endless) == 1
    assert finished.state == "failed"
    assert "did not finish within timeouts.job_s=10" in finished.reason


def test_broker_stopped_mid_fit_exits_and_runs_the_step_again_after_restart(
    fed: Federation,
) -> None:
    endless = fed.submit(endless_job("stopped"))
    wait_for(lambda: fits_started(fed, endless) == 1)
    process = fed.broker.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert stopped(fed, endless, "the broker is stopping")
    fed.broker.start()
    wait_for(lambda: fits_started(fed, endless) == 2)
    assert finished_steps(fed, endless) == ["upload_raw"]
    with fed.operator() as ops:
        assert ops.status(endless).state == "running"
        ops.cancel(endless)
    wait_for(lambda: stopped(fed, endless, "the job is cancelled"), timeout=60)


def agent_log(fed: Federation, name: str) -> str:
    return fed.agents[name].log_path.read_text()


def test_cancelling_a_job_stops_the_fits_running_at_the_sites(fed: Federation) -> None:
    endless = fed.submit(job("endless-local", "local", SUPPLIERS, synthesizer=ENDLESS_FIT))
    started = f"for job {endless} started"
    wait_for(lambda: all(started in agent_log(fed, s) for s in SUPPLIERS))
    with fed.operator() as ops:
        ops.cancel(endless)
    wait_for(
        lambda: all(
            "stopped: the broker closed the task (job cancelled)" in agent_log(fed, s)
            for s in SUPPLIERS
        ),
        timeout=60,
    )
    quick = fed.submit(job("local-after-cancel", "local", SUPPLIERS))
    assert fed.wait(quick).state == "succeeded"
