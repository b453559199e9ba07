"""An operator withdraws a release: consumers no longer list or pull it and are told why, the
operator still sees it with the reason, and the audit log records who did it."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from broker.state import BrokerState
from consumer_client import Client, ReleaseNotFound
from fedsynth.operator.cli import app as operator_app
from fedsynth.operator.client import OperatorClient
from fedsynth.security.principals import Role
from fedsynth.wire.v1 import consumer_pb2, consumer_pb2_grpc
from tests.wire.broker_harness import BrokerProcess, connection_args, released, submit_job

runner = CliRunner(env={"COLUMNS": "250"})


def release_of(broker: BrokerProcess, state: BrokerState, name: str) -> str:
    return released(state, submit_job(broker, name), name, f"rows of {name}".encode()).release_id


def test_a_withdrawn_release_is_neither_listed_nor_pulled_and_consumers_learn_why(
    broker: BrokerProcess, state: BrokerState, tmp_path: Path
) -> None:
    kept, gone = release_of(broker, state, "kept"), release_of(broker, state, "gone")
    reason = "quasi-identifier disclosure found in review"
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        summary = ops.withdraw(gone, reason)
        assert summary.withdrawn_at and summary.withdrawn_reason == reason
        listed = {r.release_id: r for r in ops.releases()}
    assert listed[gone].withdrawn_reason == reason and not listed[kept].withdrawn_at
    with Client(broker.address, **broker.identity(Role.CONSUMER, "alice")) as client:
        served = [r.release_id for r in client.list()]
        assert kept in served and gone not in served
        with pytest.raises(ReleaseNotFound, match=f"withdrawn on .*: {reason}"):
            client.pull_to(gone, tmp_path / "gone.parquet")
        client.pull_to(kept, tmp_path / "kept.parquet")
    assert not (tmp_path / "gone.parquet").exists()
    withdrawals = [e for e in state.audit.entries() if e.action == "release.withdrawn"]
    assert [(e.subject, e.actor, e.detail["reason"]) for e in withdrawals] == [
        (gone, "spiffe://testfed/operator/ops", reason)
    ]


def test_withdrawing_needs_a_reason_a_known_release_and_an_operator(
    broker: BrokerProcess, state: BrokerState
) -> None:
    release = release_of(broker, state, "still-served")
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        for bad in ("", "   ", "line\nbreak", "x" * 1001):
            with pytest.raises(grpc.RpcError) as refused:
                ops.withdraw(release, bad)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as missing:
            ops.withdraw("rel-nope", "no such release")
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    consumer_as_operator = OperatorClient(broker.address, **broker.identity(Role.CONSUMER, "alice"))
    with consumer_as_operator, pytest.raises(grpc.RpcError) as denied:
        consumer_as_operator.withdraw(release, "not mine to withdraw")
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with Client(broker.address, **broker.identity(Role.CONSUMER, "alice")) as client:
        assert release in [r.release_id for r in client.list()]


def test_operator_cli_withdraws_and_marks_the_release(
    broker: BrokerProcess, state: BrokerState
) -> None:
    release = release_of(broker, state, "cli-withdrawn")
    args = connection_args(broker, Role.OPERATOR, "ops")
    done = runner.invoke(operator_app, [*args, "withdraw", release, "--reason", "wrong cohort"])
    assert done.exit_code == 0, done.output
    assert f"withdrew {release}" in done.output
    listing = runner.invoke(operator_app, [*args, "releases"]).output
    assert f"{release} (withdrawn: wrong cohort)" in listing


def test_a_download_in_progress_ends_when_its_release_is_withdrawn(
    broker: BrokerProcess, state: BrokerState
) -> None:
    release_id = released(
        state, submit_job(broker, "big"), "big", os.urandom(64 * 1024 * 1024)
    ).release_id
    consumer = consumer_pb2_grpc.ConsumerServiceStub(broker.channel(Role.CONSUMER, "alice"))
    request = consumer_pb2.DownloadRequest(
        release_id=release_id, part=consumer_pb2.RELEASE_PART_DATASET
    )
    stream = consumer.Download(request, timeout=60)
    next(stream)
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        ops.withdraw(release_id, "found to disclose")
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stream:
            pass
    assert ended.value.code() is grpc.StatusCode.NOT_FOUND
    assert "withdrawn" in ended.value.details()


def test_a_pull_from_any_offset_is_in_the_audit_log(
    broker: BrokerProcess, state: BrokerState
) -> None:
    release_id = release_of(broker, state, "resumed")
    consumer = consumer_pb2_grpc.ConsumerServiceStub(broker.channel(Role.CONSUMER, "alice"))
    request = consumer_pb2.DownloadRequest(
        release_id=release_id, part=consumer_pb2.RELEASE_PART_DATASET, offset=1
    )
    list(consumer.Download(request, timeout=20))
    pulls = [e for e in state.audit.entries() if e.subject == release_id]
    assert [
        (e.action, e.detail["offset"]) for e in pulls if e.action.startswith("release.pull")
    ] == [("release.pull_resumed", 1)]
