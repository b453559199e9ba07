"""A broker that cannot write its state (its disk full) answers UNAVAILABLE, which peers retry,
and reports NOT_SERVING to probes until it can write again; before, calls failed with UNKNOWN
and a traceback each while the health service said SERVING."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fedsynth.security.principals import Role
from fedsynth.wire.v1 import (
    health_pb2,
    operator_pb2,
    operator_pb2_grpc,
    supplier_pb2,
    supplier_pb2_grpc,
)
from tests.wire.broker_harness import BrokerProcess, job_spec, make_broker

HEADROOM = 256 * 1024
TIMEOUT = 20


@pytest.fixture
def full_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker whose files may grow HEADROOM bytes past the database's size at start."""
    broker = make_broker(tmp_path)
    broker.start()
    broker.stop()
    size = max(p.stat().st_size for p in broker.state_dir.glob("broker.sqlite3*"))
    broker.start(max_file_bytes=size + HEADROOM)
    yield broker
    broker.stop()


def test_a_full_disk_answers_unavailable_and_reports_not_serving(
    full_broker: BrokerProcess,
) -> None:
    ops = operator_pb2_grpc.OperatorServiceStub(full_broker.channel(Role.OPERATOR, "ops"))
    supplier = supplier_pb2_grpc.SupplierServiceStub(
        full_broker.channel(Role.SUPPLIER, "hospital-a")
    )
    codes: set[grpc.StatusCode] = set()
    for i in range(400):
        spec = job_spec(f"filler-{i}").model_copy(update={"seed": i})
        try:
            ops.SubmitJob(
                operator_pb2.SubmitJobRequest(spec_json=spec.canonical_json()), timeout=TIMEOUT
            )
        except grpc.RpcError as exc:
            codes.add(exc.code())
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
            assert "cannot write its state" in exc.details()
            break
    assert codes == {grpc.StatusCode.UNAVAILABLE}, "the state never filled up"
    with pytest.raises(grpc.RpcError) as missing:
        supplier.CheckTask(
            supplier_pb2.TaskRef(supplier="hospital-a", task_id="nope"), timeout=TIMEOUT
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # reads still answer
    full_broker.wait_for_health(health_pb2.HealthCheckResponse.NOT_SERVING, timeout=TIMEOUT)
    log = (full_broker.root / "broker.log").read_text()
    assert log.count("cannot write the broker's state") == 1
    assert "Traceback" not in log
