"""The broker config's suppliers list is the enrollment: a supplier taken off it is refused after
the restart, even with a valid certificate, and new jobs may not name it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml

from fedsynth.security.principals import Role
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import operator_pb2, operator_pb2_grpc, supplier_pb2
from tests.wire.broker_harness import SUPPLIERS, job_spec, make_broker

KEPT, REMOVED = SUPPLIERS


def test_a_supplier_taken_off_the_config_is_refused_after_a_restart(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    broker.start()
    try:
        SupplierStub(broker.channel(Role.SUPPLIER, REMOVED)).ReportResult(
            supplier_pb2.TaskResult(supplier=REMOVED, task_id="none", ok=True), timeout=20
        )
    except grpc.RpcError as exc:
        assert exc.code() is not grpc.StatusCode.PERMISSION_DENIED, exc.details()
    finally:
        broker.stop()
    config = yaml.safe_load(broker.config_path.read_text())
    config["suppliers"] = [KEPT]
    broker.config_path.write_text(yaml.safe_dump(config))
    broker.start()
    try:
        with pytest.raises(grpc.RpcError) as refused:
            SupplierStub(broker.channel(Role.SUPPLIER, REMOVED)).ReportResult(
                supplier_pb2.TaskResult(supplier=REMOVED, task_id="none", ok=True), timeout=20
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert f"supplier {REMOVED!r} is not enrolled at this broker" in refused.value.details()
        operator = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
        listed = operator.ListSuppliers(operator_pb2.ListSuppliersRequest(), timeout=20)
        assert [s.name for s in listed.suppliers] == [KEPT]
        with pytest.raises(grpc.RpcError) as rejected:
            operator.SubmitJob(
                operator_pb2.SubmitJobRequest(spec_json=job_spec("after-removal").canonical_json()),
                timeout=20,
            )
        assert rejected.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert REMOVED in rejected.value.details()
    finally:
        broker.stop()
    log = (broker.root / "broker.log").read_text()
    assert f"suppliers no longer in the config's suppliers list are refused: ['{REMOVED}']" in log
