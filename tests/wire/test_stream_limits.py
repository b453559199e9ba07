"""One certificate cannot take the broker's thread pool: a supplier has one task stream at a
time, and long calls (uploads, downloads) are capped per certificate. Against a real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fedsynth.security.principals import Role
from fedsynth.wire.v1 import (
    operator_pb2,
    operator_pb2_grpc,
    supplier_pb2,
    supplier_pb2_grpc,
)
from tests.wire.broker_harness import BrokerProcess, running_broker, submit_job

TIMEOUT = 20
POLL_S = 0.02
MAX_WORKERS = 8
MAX_STREAMS = 2


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(
        tmp_path_factory.mktemp("broker"),
        max_workers=MAX_WORKERS,
        max_streams_per_principal=MAX_STREAMS,
    ) as process:
        yield process


@pytest.fixture(scope="module")
def job_id(broker: BrokerProcess) -> str:
    """A job that gives each supplier a pending task, so a task stream has one to send."""
    return submit_job(broker, "streams")


def supplier(broker: BrokerProcess, name: str) -> supplier_pb2_grpc.SupplierServiceStub:
    return supplier_pb2_grpc.SupplierServiceStub(broker.channel(Role.SUPPLIER, name))


def subscribe(broker: BrokerProcess, name: str = "hospital-a") -> grpc.Future:
    return supplier(broker, name).Subscribe(
        supplier_pb2.SubscribeRequest(supplier=name), timeout=TIMEOUT
    )


def test_a_new_task_stream_of_a_supplier_ends_the_old_one(
    broker: BrokerProcess, job_id: str
) -> None:
    """An agent reconnecting behind a dead connection gets its tasks at once, on the new
    stream; the old one is closed with ABORTED instead of holding a thread."""
    old = subscribe(broker)
    first = next(old)
    new = subscribe(broker)
    try:
        assert next(new).task_id == first.task_id
        with pytest.raises(grpc.RpcError) as info:
            next(old)
        assert info.value.code() == grpc.StatusCode.ABORTED
        assert "replaced" in (info.value.details() or "")
    finally:
        old.cancel()
        new.cancel()


def test_many_task_streams_of_one_supplier_leave_the_broker_serving_others(
    broker: BrokerProcess, job_id: str
) -> None:
    """t10: more Subscribe streams of one certificate than the broker has threads starved
    everyone else (DEADLINE_EXCEEDED for operators, consumers, other suppliers)."""
    streams: list[grpc.Future] = []
    try:
        for _ in range(2 * MAX_WORKERS):
            streams.append(subscribe(broker))
            assert next(streams[-1]).job_id == job_id  # served: it holds a thread now
        ops = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
        assert ops.GetJob(operator_pb2.JobRef(job_id=job_id), timeout=TIMEOUT).job_id == job_id
        other = subscribe(broker, "hospital-b")
        assert next(other).job_id == job_id
        other.cancel()
    finally:
        for stream in streams:
            stream.cancel()


def held_upload(release: threading.Event) -> Iterator[supplier_pb2.UploadChunk]:
    """An upload stream that sends nothing until `release` is set, then ends."""
    release.wait(TIMEOUT)
    yield from ()


def fetch_code(broker: BrokerProcess, name: str) -> grpc.StatusCode:
    """The status of a download `name` may make (of an object that does not exist)."""
    request = supplier_pb2.FetchArtifactRequest(supplier=name, sha256="0" * 64)
    with pytest.raises(grpc.RpcError) as info:
        list(supplier(broker, name).FetchArtifact(request, timeout=TIMEOUT))
    return info.value.code()


def wait_for_code(broker: BrokerProcess, name: str, code: grpc.StatusCode) -> None:
    for _ in range(int(TIMEOUT / POLL_S)):
        if fetch_code(broker, name) == code:
            return
        time.sleep(POLL_S)
    raise AssertionError(f"a download of {name} never got {code.name}")


def test_long_calls_past_the_per_certificate_cap_are_refused_and_others_are_served(
    broker: BrokerProcess,
) -> None:
    """Uploads and downloads held open by one certificate are capped, leaving the rest of
    the thread pool to everyone else; the cap frees as the calls end."""
    release = threading.Event()
    stub = supplier(broker, "hospital-a")
    # wait_for_ready: a call on a channel still connecting would otherwise fail at once and
    # hold nothing.
    held = [
        stub.Upload.future(held_upload(release), timeout=TIMEOUT, wait_for_ready=True)
        for _ in range(MAX_STREAMS)
    ]
    try:
        wait_for_code(broker, "hospital-a", grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert fetch_code(broker, "hospital-b") == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            list(
                stub.FetchArtifact(
                    supplier_pb2.FetchArtifactRequest(supplier="hospital-a", sha256="0" * 64),
                    timeout=TIMEOUT,
                )
            )
        assert "limits.max_streams_per_principal" in (info.value.details() or "")
    finally:
        release.set()
    for call in held:
        with pytest.raises(grpc.RpcError):
            call.result()
    wait_for_code(broker, "hospital-a", grpc.StatusCode.NOT_FOUND)


def test_a_task_stream_of_a_revoked_supplier_ends_before_it_sends_another_task(
    tmp_path: Path,
) -> None:
    """The interceptor checks a certificate when a call starts; a task stream outlives that, so
    the stream itself stops once its certificate is on the revocation list."""
    with running_broker(tmp_path) as broker:
        submit_job(broker, "before")
        stream = subscribe(broker, "hospital-b")
        try:
            assert next(stream).job_id
            broker.pki.revoke(role=Role.SUPPLIER, name="hospital-b")
            submit_job(broker, "after")
            with pytest.raises(grpc.RpcError) as info:
                next(stream)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (info.value.details() or "")
        finally:
            stream.cancel()
