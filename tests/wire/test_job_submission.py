"""Submitting jobs against a real broker: a retried request does not start a second job, and
the operator command line will not start a second run of an unfinished spec by mistake."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml
from typer.testing import CliRunner

from broker.state import BrokerState
from fedsynth.operator.cli import app as operator_app
from fedsynth.operator.client import OperatorClient
from fedsynth.security.principals import Role
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import operator_pb2, operator_pb2_grpc, supplier_pb2
from tests.wire.broker_harness import BrokerProcess, connection_args, job_spec

runner = CliRunner(env={"COLUMNS": "250"})


def operator_stub(broker: BrokerProcess) -> operator_pb2_grpc.OperatorServiceStub:
    return operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))


def submit(broker: BrokerProcess, name: str, request_id: str) -> operator_pb2.Job:
    request = operator_pb2.SubmitJobRequest(
        spec_json=job_spec(name).canonical_json(), request_id=request_id
    )
    return operator_stub(broker).SubmitJob(request, timeout=20)


def jobs_named(broker: BrokerProcess, name: str) -> list[str]:
    listed = operator_stub(broker).ListJobs(operator_pb2.ListJobsRequest(), timeout=20).jobs
    return [j.job_id for j in listed if j.name == name]


def test_a_repeated_submission_request_returns_the_first_job_instead_of_starting_another(
    broker: BrokerProcess, state: BrokerState
) -> None:
    first = submit(broker, "retried", "retry-7f3a")
    again = submit(broker, "retried", "retry-7f3a")
    assert again.job_id == first.job_id
    assert jobs_named(broker, "retried") == [first.job_id]
    submitted = [
        e
        for e in state.audit.entries()
        if e.action == "job.submitted" and e.subject == first.job_id
    ]
    assert len(submitted) == 1


def test_a_new_request_id_starts_a_new_job_of_the_same_spec(broker: BrokerProcess) -> None:
    first = submit(broker, "twice", "run-1")
    second = submit(broker, "twice", "run-2")
    assert first.job_id != second.job_id
    assert sorted(jobs_named(broker, "twice")) == sorted([first.job_id, second.job_id])


def test_a_request_id_reused_for_another_spec_is_refused_naming_its_job(
    broker: BrokerProcess,
) -> None:
    first = submit(broker, "original", "reused-id")
    with pytest.raises(grpc.RpcError) as refused:
        submit(broker, "different", "reused-id")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"already submitted job {first.job_id} with another spec" in refused.value.details()
    assert jobs_named(broker, "different") == []


@pytest.mark.parametrize("request_id", ["has space", "x" * 129, "semi;colon", "é"])
def test_a_malformed_request_id_is_refused(broker: BrokerProcess, request_id: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        submit(broker, "malformed-id", request_id)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id must be 1 to 128 of the characters" in refused.value.details()
    assert jobs_named(broker, "malformed-id") == []


def test_the_python_client_sends_a_fresh_request_id_per_submission(broker: BrokerProcess) -> None:
    ids = broker.identity(Role.OPERATOR, "ops")
    with OperatorClient(broker.address, ca=ids["ca"], cert=ids["cert"], key=ids["key"]) as ops:
        first = ops.submit(job_spec("client-twice"))
        second = ops.submit(job_spec("client-twice"))
        pinned = ops.submit(job_spec("client-pinned"), request_id="pinned-1")
        assert ops.submit(job_spec("client-pinned"), request_id="pinned-1").job_id == pinned.job_id
    assert first.job_id != second.job_id


def test_operator_cli_refuses_a_second_run_of_an_unfinished_spec_unless_told_again(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(
        yaml.safe_dump(job_spec("cli-once").model_dump(mode="json", by_alias=True))
    )
    args = [*connection_args(broker, Role.OPERATOR, "ops"), "submit", str(spec_path)]
    first = runner.invoke(operator_app, args)
    assert first.exit_code == 0, first.output
    job_id = first.output.split()[1]
    refused = runner.invoke(operator_app, args)
    assert refused.exit_code == 2
    assert f"job {job_id} ('cli-once'" in refused.output
    assert "pass --again to start another run" in refused.output
    assert jobs_named(broker, "cli-once") == [job_id]
    again = runner.invoke(operator_app, [*args, "--again"])
    assert again.exit_code == 0, again.output
    assert again.output.split()[1] != job_id
    assert len(jobs_named(broker, "cli-once")) == 2


def test_submissions_cancels_and_refusals_are_logged_with_who_did_them(
    broker: BrokerProcess,
) -> None:
    job = submit(broker, "logged", "logged-1")
    operator_stub(broker).CancelJob(operator_pb2.JobRef(job_id=job.job_id), timeout=20)
    consumer_as_operator = operator_pb2_grpc.OperatorServiceStub(
        broker.channel(Role.CONSUMER, "alice")
    )
    with pytest.raises(grpc.RpcError):
        consumer_as_operator.ListJobs(operator_pb2.ListJobsRequest(), timeout=20)
    log = (broker.root / "broker.log").read_text()
    operator = "spiffe://testfed/operator/ops"
    assert f"job {job.job_id} ('logged', central) submitted by {operator}" in log
    assert f"job {job.job_id} cancelled by {operator}" in log
    assert (
        "refused /fedsynth.v1.OperatorService/ListJobs to spiffe://testfed/consumer/alice: "
        "PERMISSION_DENIED" in log
    )


def test_candidates_of_an_unknown_job_are_not_found(broker: BrokerProcess) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        operator_stub(broker).ListCandidates(
            operator_pb2.ListCandidatesRequest(job_id="job-nope"), timeout=20
        )
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_role_refused_a_method_is_named_with_its_article(broker: BrokerProcess) -> None:
    supplier = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.SUPPLIER, "hospital-a"))
    with pytest.raises(grpc.RpcError) as refused:
        supplier.ListJobs(operator_pb2.ListJobsRequest(), timeout=20)
    assert refused.value.details().startswith("a supplier may not call ")
    operator = SupplierStub(broker.channel(Role.OPERATOR, "ops"))
    with pytest.raises(grpc.RpcError) as refused:
        operator.CheckTask(supplier_pb2.TaskRef(supplier="hospital-a", task_id="t"), timeout=20)
    assert refused.value.details().startswith("an operator may not call ")
