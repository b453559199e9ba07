"""Operator client: submit, inspect and cancel jobs; review suppliers, candidates, releases."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc

from fedsynth.jobs import JobSpec
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.paging import every_page
from fedsynth.wire.v1 import common_pb2, operator_pb2, operator_pb2_grpc

SUBMIT_ATTEMPTS = 3
RESUBMIT_PAUSE_S = 1.0
RESUBMITTABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class OperatorClient:
    """A connection to the broker with an operator certificate."""

    def __init__(
        self,
        broker: str,
        *,
        ca: str | Path,
        cert: str | Path,
        key: str | Path,
        server_name: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self._channel = secure_channel(broker, ca=ca, cert=cert, key=key, server_name=server_name)
        self._stub = operator_pb2_grpc.OperatorServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(
        self, spec: JobSpec, *, request_id: str | None = None, attempts: int = SUBMIT_ATTEMPTS
    ) -> operator_pb2.Job:
        """Submit `spec` as one job. The request carries `request_id` (a fresh random one when
        None), so a submission whose reply was lost (UNAVAILABLE, DEADLINE_EXCEEDED) is sent
        again, up to `attempts` times, without starting a second job."""
        request = operator_pb2.SubmitJobRequest(
            spec_json=spec.canonical_json(), request_id=request_id or uuid.uuid4().hex
        )
        for attempt in range(1, attempts + 1):
            try:
                return self._stub.SubmitJob(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                if exc.code() not in RESUBMITTABLE or attempt == attempts:
                    raise
                time.sleep(RESUBMIT_PAUSE_S * attempt)
        raise ValueError(f"attempts must be at least 1, not {attempts}")

    def status(self, job_id: str) -> operator_pb2.Job:
        return self._stub.GetJob(operator_pb2.JobRef(job_id=job_id), timeout=self.timeout)

    def jobs(self, state: str = "") -> list[operator_pb2.Job]:
        """Every job (in `state` when given), oldest first, fetched a page at a time."""
        return every_page(
            lambda token: self._stub.ListJobs(
                operator_pb2.ListJobsRequest(state=state, page_token=token), timeout=self.timeout
            ),
            lambda reply: reply.jobs,
        )

    def cancel(self, job_id: str) -> operator_pb2.Job:
        return self._stub.CancelJob(operator_pb2.JobRef(job_id=job_id), timeout=self.timeout)

    def suppliers(self) -> list[operator_pb2.Supplier]:
        reply = self._stub.ListSuppliers(operator_pb2.ListSuppliersRequest(), timeout=self.timeout)
        return list(reply.suppliers)

    def candidates(self, job_id: str = "") -> list[operator_pb2.Candidate]:
        """Every candidate (of `job_id` when given), rejected ones with their reasons."""
        return every_page(
            lambda token: self._stub.ListCandidates(
                operator_pb2.ListCandidatesRequest(job_id=job_id, page_token=token),
                timeout=self.timeout,
            ),
            lambda reply: reply.candidates,
        )

    def withdraw(self, release_id: str, reason: str) -> common_pb2.ReleaseSummary:
        """Stop serving a release to consumers; `reason` is recorded and shown to them."""
        request = operator_pb2.WithdrawReleaseRequest(release_id=release_id, reason=reason)
        return self._stub.WithdrawRelease(request, timeout=self.timeout)

    def releases(self) -> list[common_pb2.ReleaseSummary]:
        """Every release, oldest first, withdrawn ones included (with when and why)."""
        return every_page(
            lambda token: self._stub.ListReleases(
                common_pb2.ListReleasesRequest(page_token=token), timeout=self.timeout
            ),
            lambda reply: reply.releases,
        )
