"""An operator asking for one job sees what it waits for: each task, its supplier and state,
and when that supplier's agent last called the broker (never, for one not running)."""

from __future__ import annotations

from pathlib import Path

from fedsynth.security.principals import Role
from fedsynth.wire.v1 import operator_pb2, operator_pb2_grpc, supplier_pb2, supplier_pb2_grpc
from tests.wire.broker_harness import running_broker, submit_job


def test_a_job_shows_each_suppliers_task_and_last_contact(tmp_path: Path) -> None:
    with running_broker(tmp_path) as broker:
        job_id = submit_job(broker, "progress")
        agent = supplier_pb2_grpc.SupplierServiceStub(broker.channel(Role.SUPPLIER, "hospital-a"))
        stream = agent.Subscribe(supplier_pb2.SubscribeRequest(supplier="hospital-a"), timeout=20)
        try:
            next(stream)
            ops = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
            job = ops.GetJob(operator_pb2.JobRef(job_id=job_id), timeout=20)
        finally:
            stream.cancel()
    tasks = {t.supplier: t for t in job.tasks}
    assert set(tasks) == {"hospital-a", "hospital-b"}
    assert all(t.state == "pending" and t.kind and t.task_id for t in tasks.values())
    assert tasks["hospital-a"].supplier_last_contact
    assert tasks["hospital-b"].supplier_last_contact == ""
