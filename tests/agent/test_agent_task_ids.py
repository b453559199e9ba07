"""A broker's task and job ids name folders at the site: one that is a path is refused, not
used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedsynth.wire.v1 import supplier_pb2
from supplier_agent.agent import SupplierAgent
from supplier_agent.config import AgentConfig

CONFIG = """
name: hospital-a
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/hospital-a.pem, key: pki/hospital-a.key}
state_dir: state
sources:
  admissions: {kind: file, path: data/admissions.csv}
egress:
  allow: [statistics]
  topologies: [federated]
"""


class HostileBroker:
    """Stands for a broker that sends crafted tasks: it only records what the agent reports."""

    def __init__(self) -> None:
        self.reports: list[supplier_pb2.TaskResult] = []

    def ReportResult(self, result: supplier_pb2.TaskResult, **_: Any) -> supplier_pb2.Ack:
        self.reports.append(result)
        return supplier_pb2.Ack(accepted=True)


@pytest.mark.parametrize("crafted", ["/VICTIM", "../../victim", "..", ".", "", "a/b"])
@pytest.mark.parametrize("field", ["task_id", "job_id"])
def test_a_task_or_job_id_that_is_a_path_is_refused_and_deletes_nothing(
    tmp_path: Path, crafted: str, field: str
) -> None:
    (tmp_path / "agent.yaml").write_text(CONFIG)
    config = AgentConfig.load(tmp_path / "agent.yaml")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("site data")
    queued = config.state_dir / "outbox" / "job-9.0.hospital-a"
    queued.mkdir(parents=True)
    (queued / "outgoing.json").write_text("{}")
    ids = {"task_id": "job-1.0.hospital-a", "job_id": "job-1"}
    ids[field] = crafted.replace("/VICTIM", str(victim))
    broker = HostileBroker()
    agent = SupplierAgent(config)
    try:
        agent.handle(broker, supplier_pb2.Task(kind="upload_raw", **ids))
    finally:
        agent.journal.close()
    assert (victim / "keep.txt").read_text() == "site data"
    assert (queued / "outgoing.json").exists()
    (report,) = broker.reports
    assert not report.ok and "not a plain name" in report.error
