"""Supplier task streams, artifact grants, job cancellation, certificate rotation and the
operator and consumer command lines, against a real broker process."""

from __future__ import annotations

import io
import json
import socket
import ssl
import stat
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pandas as pd
import pytest
import yaml
from cryptography import x509
from typer.testing import CliRunner

from broker.releases import publish
from broker.state import BrokerState
from consumer_client.cli import app as consumer_app
from fedsynth.operator.cli import app as operator_app
from fedsynth.operator.client import OperatorClient
from fedsynth.security.principals import Role
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.transfer import download_file, upload_file
from fedsynth.wire.v1 import supplier_pb2
from tests.wire.broker_harness import BrokerProcess, connection_args, job_spec, submit_job

runner = CliRunner(env={"COLUMNS": "250"})


def supplier_stub(broker: BrokerProcess, name: str) -> SupplierStub:
    return SupplierStub(broker.channel(Role.SUPPLIER, name))


def test_supplier_receives_its_tasks_and_results_are_recorded_once(
    broker: BrokerProcess, state: BrokerState
) -> None:
    job_id = submit_job(broker, "tasks")
    artifact = state.artifacts.put_bytes(b"candidate table bytes")
    task_id = state.store.add_task(job_id, "hospital-a", "audit", {"rows": 5}, (artifact.sha256,))
    state.store.add_task(job_id, "hospital-b", "audit", {"rows": 5})
    stub = supplier_stub(broker, "hospital-a")
    stream = stub.Subscribe(supplier_pb2.SubscribeRequest(supplier="hospital-a"), timeout=30)
    # The job's own first task may come first: the broker queues it on its next pass.
    task = next(t for t in stream if t.task_id == task_id)
    stream.cancel()
    assert (task.task_id, task.job_id, json.loads(task.payload_json)) == (
        task_id,
        job_id,
        {"rows": 5},
    )
    fetched = download_file(
        lambda offset: stub.FetchArtifact(
            supplier_pb2.FetchArtifactRequest(
                supplier="hospital-a", sha256=artifact.sha256, offset=offset
            ),
            timeout=30,
        ),
        Path(state.config.state_dir).parent / "fetched.bin",
        expected_sha256=artifact.sha256,
    )
    assert fetched.size == len(b"candidate table bytes")
    result = supplier_pb2.TaskResult(
        supplier="hospital-a", task_id=task_id, ok=True, result_json=b'{"verdict": "pass"}'
    )
    assert stub.ReportResult(result, timeout=30).accepted
    assert not stub.ReportResult(result, timeout=30).accepted
    assert state.store.task(task_id).state == "done"


def test_supplier_cannot_fetch_artifacts_of_other_suppliers_tasks(
    broker: BrokerProcess, state: BrokerState
) -> None:
    job_id = submit_job(broker, "grants")
    secret = state.artifacts.put_bytes(b"for hospital-a only")
    state.store.add_task(job_id, "hospital-a", "audit", {}, (secret.sha256,))
    stub = supplier_stub(broker, "hospital-b")
    request = supplier_pb2.FetchArtifactRequest(supplier="hospital-b", sha256=secret.sha256)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.FetchArtifact(request, timeout=30))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_supplier_cannot_subscribe_as_another_supplier(broker: BrokerProcess) -> None:
    stub = supplier_stub(broker, "hospital-b")
    stream = stub.Subscribe(supplier_pb2.SubscribeRequest(supplier="hospital-a"), timeout=30)
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_cancelling_a_job_deletes_its_raw_rows(
    broker: BrokerProcess, state: BrokerState, tmp_path: Path
) -> None:
    job_id = submit_job(broker, "cancel-me")
    task_id = f"{job_id}.0.hospital-a"
    while task_id not in {t.task_id for t in state.store.tasks_of_job(job_id)}:
        time.sleep(0.02)  # an upload is for a task the broker has queued
    raw = tmp_path / "raw.csv"
    raw.write_bytes(b"age,sex\n40,F\n")
    header = supplier_pb2.UploadHeader(
        supplier="hospital-a",
        job_id=job_id,
        task_id=task_id,
        name="raw.csv",
        kind=supplier_pb2.UPLOAD_KIND_RAW,
    )
    status = upload_file(supplier_stub(broker, "hospital-a"), header, raw)
    assert state.artifacts.has(status.sha256, encrypted=True)
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        assert ops.cancel(job_id).state == "cancelled"
        with pytest.raises(grpc.RpcError) as info:
            ops.cancel(job_id)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not state.artifacts.has(status.sha256, encrypted=True)
    with pytest.raises(grpc.RpcError) as info:
        upload_file(supplier_stub(broker, "hospital-a"), header, raw)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def served_certificate(broker: BrokerProcess) -> x509.Certificate:
    ids = broker.identity(Role.CONSUMER, "alice")
    context = ssl.create_default_context(cafile=str(ids["ca"]))
    context.load_cert_chain(ids["cert"], ids["key"])
    context.set_alpn_protocols(["h2"])
    host, port = broker.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_server_certificate_rotates_without_a_restart(broker: BrokerProcess) -> None:
    before = served_certificate(broker)
    cert_path, _ = broker.pki.issue(
        Role.BROKER, "broker", ip_addresses=("127.0.0.1",), replace=True
    )
    rotated = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert rotated.serial_number != before.serial_number
    assert served_certificate(broker).serial_number == rotated.serial_number
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        assert ops.suppliers()


def test_a_rotated_certificate_that_is_not_the_brokers_is_not_served(
    broker: BrokerProcess,
) -> None:
    before = served_certificate(broker)
    cert_path, key_path = broker.pki.paths_for(Role.BROKER, "broker")
    saved = cert_path.read_bytes(), key_path.read_bytes()
    ops_cert, ops_key = broker.pki.paths_for(Role.OPERATOR, "ops")
    try:
        key_path.write_bytes(ops_key.read_bytes())
        cert_path.write_bytes(ops_cert.read_bytes())
        for _ in range(3):
            assert served_certificate(broker).serial_number == before.serial_number
    finally:
        cert_path.write_bytes(saved[0])
        key_path.write_bytes(saved[1])


def test_an_agent_connecting_after_a_cancel_is_not_sent_the_cancelled_jobs_tasks(
    broker: BrokerProcess, state: BrokerState
) -> None:
    cancelled = submit_job(broker, "cancel-queued")
    queued = state.store.add_task(cancelled, "hospital-b", "upload_raw", {})
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        ops.cancel(cancelled)
    later = state.store.add_task(submit_job(broker, "still-open"), "hospital-b", "audit", {})
    stream = supplier_stub(broker, "hospital-b").Subscribe(
        supplier_pb2.SubscribeRequest(supplier="hospital-b"), timeout=30
    )
    sent = []
    for task in stream:
        sent.append(task.task_id)
        if task.task_id == later:
            break
    stream.cancel()
    assert queued not in sent
    closed = state.store.task(queued)
    assert (closed.state, closed.error) == ("failed", "job cancelled")


def test_operator_cli_submits_lists_shows_and_cancels(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(job_spec("cli-job").model_dump(mode="json", by_alias=True)))
    args = connection_args(broker, Role.OPERATOR, "ops")
    submitted = runner.invoke(operator_app, [*args, "submit", str(spec_path)])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.split()[1]
    listed = runner.invoke(operator_app, [*args, "list"])
    assert job_id in listed.output and "hospital-a" in listed.output
    status = runner.invoke(operator_app, [*args, "status", job_id]).output
    assert "submitted" in status or "running" in status
    deadline = time.monotonic() + 10
    while f"{job_id}.0.hospital-b" not in status and time.monotonic() < deadline:
        time.sleep(0.2)
        status = runner.invoke(operator_app, [*args, "status", job_id]).output
    assert f"{job_id}.0.hospital-b" in status and "supplier last contact" in status, status
    assert "cancelled" in runner.invoke(operator_app, [*args, "cancel", job_id]).output
    missing = runner.invoke(operator_app, [*args, "status", "job-nope"])
    assert missing.exit_code == 2 and "NOT_FOUND" in missing.output


def test_operator_cli_reports_an_invalid_job_spec_by_field(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    spec_path = tmp_path / "bad.yaml"
    spec_path.write_text("name: x\ntopology: teleport\n")
    result = runner.invoke(
        operator_app, [*connection_args(broker, Role.OPERATOR, "ops"), "submit", str(spec_path)]
    )
    assert result.exit_code == 2 and "topology" in result.output and "bad.yaml" in result.output


def test_consumer_cli_lists_shows_and_pulls(
    broker: BrokerProcess, state: BrokerState, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    frame = pd.DataFrame({"age": [1, 2, 3]})
    frame.to_parquet(buffer, index=False)
    published = publish(
        state,
        job_id=submit_job(broker, "cli-release"),
        name="cli-release",
        dataset=buffer.getvalue(),
        audit_report_json=b'{"verdict": "pass"}',
        audit_html=b"<html/>",
        job_spec_hash="c" * 64,
        topology="local",
        synthesizer="cart",
        privacy_spent={"epsilon": 0.5},
    )
    args = connection_args(broker, Role.CONSUMER, "alice")
    assert published.release_id in runner.invoke(consumer_app, [*args, "list"]).output
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(consumer_app, [*args, "list"]).output
    for line in (f"release: {published.release_id}", "name: cli-release", "synthesizer: cart"):
        assert line in narrow.splitlines()
    shown = runner.invoke(consumer_app, [*args, "show", published.release_id])
    assert json.loads(shown.output)["synthesizer"] == "cart"
    out = tmp_path / "pulled.parquet"
    pulled = runner.invoke(consumer_app, [*args, "pull", published.release_id, "--out", str(out)])
    assert pulled.exit_code == 0, pulled.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    as_csv = tmp_path / "pulled.csv"
    pulled = runner.invoke(
        consumer_app, [*args, "pull", published.release_id, "--out", str(as_csv)]
    )
    assert pulled.exit_code == 0, pulled.output
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(as_csv.stat().st_mode) == 0o600


def test_a_second_broker_on_the_same_port_or_state_is_refused_and_the_first_serves_on(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    same_state = broker.serve_once()
    assert same_state.returncode == 2, same_state.stderr
    assert "another broker" in same_state.stderr and "Traceback" not in same_state.stderr
    own_state = yaml.safe_load(broker.config_path.read_text())
    own_state.pop("health_listen")
    (tmp_path / "broker.yaml").write_text(yaml.safe_dump(own_state))
    same_port = replace(broker, config_path=tmp_path / "broker.yaml").serve_once()
    assert same_port.returncode == 2, same_port.stderr
    assert "cannot listen on" in same_port.stderr and "Traceback" not in same_port.stderr
    ops = broker.identity(Role.OPERATOR, "ops")
    seen = []
    for _ in range(6):
        with OperatorClient(broker.address, **ops) as client:
            seen.append(sorted(job.job_id for job in client.jobs()))
    assert all(ids == seen[0] for ids in seen)
