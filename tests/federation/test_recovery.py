"""Failures: a broker killed mid-job resumes from its last finished step and completes the job;
an agent whose upload broke off delivers the same bytes on its next try."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fedsynth.wire.bulk import UploadFrame
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import supplier_pb2
from supplier_agent.agent import SupplierAgent
from tests.federation.harness import STRICT, Federation, job, strict_site_task


def finished_steps(fed: Federation, job_id: str) -> list[str]:
    with sqlite3.connect(fed.broker.state_dir / "broker.sqlite3") as db:
        rows = db.execute("SELECT name FROM job_steps WHERE job_id = ? ORDER BY step", (job_id,))
        return [name for (name,) in rows]


def step_entries(fed: Federation, job_id: str) -> list[str]:
    with sqlite3.connect(fed.broker.state_dir / "broker.sqlite3") as db:
        rows = db.execute(
            "SELECT detail_json FROM audit_log WHERE subject = ? AND action = 'job.step'",
            (job_id,),
        )
        return [json.loads(detail)["step"] for (detail,) in rows]


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        tick.wait(0.1)


def test_broker_killed_mid_job_completes_it_after_restart_without_redoing_steps(
    federation: Federation,
) -> None:
    job_id = federation.submit(job("restart-mid-job", "federated"))
    wait_for(lambda: "marginal_stats" in finished_steps(federation, job_id))
    process = federation.broker.process
    assert process is not None
    process.kill()
    process.wait(timeout=30)
    federation.broker.start()
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    entries = step_entries(federation, job_id)
    assert entries.count("marginal_stats") == 1
    assert finished_steps(federation, job_id)[-1] == "release_audited"


class Crash(BaseException):
    """Stands for the agent process dying: nothing in the agent catches it."""


class CrashingStub:
    """A real SupplierService stub that sends only the first chunk of an upload, then dies."""

    def __init__(self, stub: SupplierStub, crash: bool) -> None:
        self._stub = stub
        self._crash = crash
        self.begun: list[supplier_pb2.UploadStatus] = []
        self.headers: list[supplier_pb2.UploadHeader] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def BeginUpload(self, header: supplier_pb2.UploadHeader, **kw: Any) -> Any:
        self.headers.append(header)
        status = self._stub.BeginUpload(header, **kw)
        self.begun.append(status)
        return status

    def Upload(self, chunks: Iterator[UploadFrame], **kw: Any) -> Any:
        if not self._crash:
            return self._stub.Upload(chunks, **kw)
        self._stub.Upload(iter([next(chunks)]), **kw)
        raise Crash


def test_agent_dying_mid_upload_resumes_it_after_restart_with_the_same_hash(
    federation: Federation, tmp_path: Path
) -> None:
    spec = job("crash-mid-upload", "central", (STRICT,))
    with strict_site_task(federation, tmp_path / "state", spec, chunk_bytes=1024) as (
        config,
        stub,
        task,
    ):
        crashing = CrashingStub(stub, crash=True)
        with pytest.raises(Crash):
            SupplierAgent(config).handle(crashing, task)
        restarted = CrashingStub(stub, crash=False)
        SupplierAgent(config).handle(restarted, task)
    first, second = crashing.headers[0], restarted.headers[0]
    assert second.sha256 == first.sha256 and second.size == first.size > 1024
    assert restarted.begun[0].received == 1024
    assert federation.wait(task.job_id).state == "succeeded"
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        (sha,) = db.execute(
            "SELECT sha256 FROM uploads WHERE job_id = ?", (task.job_id,)
        ).fetchone()
    assert sha == first.sha256
