"""Listings grow with the broker's life, so every list call answers a page at a time, against
a real broker: pages cover every row once, in order; bad cursors are refused; and the clients
follow the pages to the end."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.config import BrokerConfig
from broker.paging import DEFAULT_PAGE_SIZE
from broker.state import BrokerState
from consumer_client import Client
from fedsynth.jobs import JobState
from fedsynth.operator.client import OperatorClient
from fedsynth.security.principals import Role
from fedsynth.wire.paging import every_page
from fedsynth.wire.v1 import common_pb2, consumer_pb2_grpc, operator_pb2, operator_pb2_grpc
from tests.wire.broker_harness import (
    BrokerProcess,
    job_spec,
    make_broker,
    released,
    stored_job,
    submit_job,
)


def operator_stub(broker: BrokerProcess) -> operator_pb2_grpc.OperatorServiceStub:
    return operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))


def job_pages(broker: BrokerProcess, size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        request = operator_pb2.ListJobsRequest(page_size=size, page_token=token)
        reply = operator_stub(broker).ListJobs(request, timeout=20)
        pages.append([j.job_id for j in reply.jobs])
        token = reply.next_page_token
        if not token:
            return pages


def test_job_pages_cover_every_job_once_in_submission_order(broker: BrokerProcess) -> None:
    submitted = [submit_job(broker, f"paged-{i}") for i in range(7)]
    pages = job_pages(broker, 3)
    listed = [job for page in pages for job in page]
    assert all(len(page) <= 3 for page in pages)
    assert len(listed) == len(set(listed))
    assert [j for j in listed if j in submitted] == submitted
    unpaged = operator_stub(broker).ListJobs(operator_pb2.ListJobsRequest(), timeout=20)
    assert [j.job_id for j in unpaged.jobs] == listed


@pytest.mark.parametrize(
    ("size", "token", "problem"),
    [
        (-1, "", "page_size -1 is negative"),
        (3, "not-a-token", "is not one this broker handed out"),
        (3, "9" * 40, "is not one this broker handed out"),
        (3, str(2**63), "is not one this broker handed out"),
        (3, "9" * 19, "is not one this broker handed out"),
    ],
)
def test_a_bad_page_request_is_refused(
    broker: BrokerProcess, size: int, token: str, problem: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        operator_stub(broker).ListJobs(
            operator_pb2.ListJobsRequest(page_size=size, page_token=token), timeout=20
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert problem in refused.value.details()


def test_consumers_page_through_releases(broker: BrokerProcess, state: BrokerState) -> None:
    job_id = submit_job(broker, "paged-releases")
    published = [
        released(state, job_id, f"paged-{i}", f"rows {i}".encode()).release_id for i in range(3)
    ]
    consumer = consumer_pb2_grpc.ConsumerServiceStub(broker.channel(Role.CONSUMER, "alice"))
    first = consumer.ListReleases(common_pb2.ListReleasesRequest(page_size=2), timeout=20)
    assert len(first.releases) == 2 and first.next_page_token
    rest = consumer.ListReleases(
        common_pb2.ListReleasesRequest(page_size=2, page_token=first.next_page_token), timeout=20
    )
    listed = [r.release_id for r in [*first.releases, *rest.releases]]
    assert [r for r in listed if r in published] == published
    assert not rest.next_page_token


def test_both_clients_list_past_one_page(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    state = BrokerState.open(BrokerConfig.load(broker.config_path))
    try:
        spec = job_spec("many")
        for _ in range(DEFAULT_PAGE_SIZE + 3):
            job = stored_job(state, spec)
            state.store.set_job_state(job.job_id, JobState.CANCELLED, "listing test")
        published = released(state, job.job_id, "last", b"rows")
    finally:
        state.close()
    broker.start()
    try:
        with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
            jobs = ops.jobs()
            assert len(jobs) == DEFAULT_PAGE_SIZE + 3
            assert jobs[-1].job_id == job.job_id
            assert [r.release_id for r in ops.releases()] == [published.release_id]
        with Client(broker.address, **broker.identity(Role.CONSUMER, "alice")) as client:
            assert [r.release_id for r in client.list()] == [published.release_id]
    finally:
        broker.stop()


@given(st.lists(st.integers(), max_size=30), st.integers(min_value=1, max_value=7))
def test_every_page_joins_the_pages_in_order(items: list[int], size: int) -> None:
    def fetch(token: str) -> common_pb2.ReleaseList:
        start = int(token or 0)
        page = items[start : start + size]
        more = start + size < len(items)
        return common_pb2.ReleaseList(
            releases=[common_pb2.ReleaseSummary(name=str(i)) for i in page],
            next_page_token=str(start + size) if more else "",
        )

    joined = every_page(fetch, lambda reply: reply.releases)
    assert [int(r.name) for r in joined] == items


def test_every_page_refuses_a_token_handed_out_twice() -> None:
    def fetch(token: str) -> common_pb2.ReleaseList:
        return common_pb2.ReleaseList(next_page_token="same")

    with pytest.raises(RuntimeError, match="handed out page token 'same' twice"):
        every_page(fetch, lambda reply: reply.releases)
