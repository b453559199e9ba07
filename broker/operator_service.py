"""OperatorService: submit, inspect and cancel jobs; review suppliers, candidates and releases."""

from __future__ import annotations

import logging
import re

import grpc

from broker.errors import Refusal
from broker.interceptor import principal_of
from broker.messages import candidate_message, job_message, release_page, release_summary
from broker.paging import page_request, page_token
from broker.rpc import refusals_abort
from broker.state import BrokerState
from broker.store import JobRow
from fedsynth.jobs import JobSpec, JobSpecError, JobState
from fedsynth.wire.v1 import common_pb2, operator_pb2, operator_pb2_grpc

log = logging.getLogger(__name__)
MAX_REASON = 1000
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class OperatorService(operator_pb2_grpc.OperatorServiceServicer):
    def __init__(self, state: BrokerState) -> None:
        self.state = state

    def _job(self, job_id: str) -> JobRow:
        try:
            return self.state.store.job(job_id)
        except KeyError as exc:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}") from exc

    @refusals_abort
    def SubmitJob(
        self, request: operator_pb2.SubmitJobRequest, context: grpc.ServicerContext
    ) -> operator_pb2.Job:
        principal = principal_of(context, self.state.config.federation)
        try:
            spec = JobSpec.from_json(request.spec_json, source="submitted job spec")
        except JobSpecError as exc:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        unknown = [
            s.supplier for s in spec.suppliers if not self.state.store.is_enrolled(s.supplier)
        ]
        if unknown:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"suppliers not enrolled at this broker: {unknown}",
            )
        if request.request_id and not REQUEST_ID.fullmatch(request.request_id):
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                "request_id must be 1 to 128 of the characters A-Z a-z 0-9 . _ : -",
            )
        row, created = self.state.store.submit_job(
            name=spec.name,
            topology=spec.topology.value,
            spec_json=spec.canonical_json(),
            spec_sha256=spec.spec_hash,
            submitted_by=principal.uri,
            request_id=request.request_id,
        )
        if row.spec_sha256 != spec.spec_hash:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id {request.request_id!r} already submitted job {row.job_id} with "
                "another spec; a new submission takes a new request_id",
            )
        if not created:
            log.info("job %s: repeated submission %r answered", row.job_id, request.request_id)
            return job_message(row)
        log.info(
            "job %s (%r, %s) submitted by %s",
            row.job_id,
            spec.name,
            spec.topology.value,
            principal.uri,
        )
        self.state.audit.append(
            principal.uri,
            "job.submitted",
            row.job_id,
            name=spec.name,
            topology=spec.topology.value,
            spec_sha256=spec.spec_hash,
        )
        return job_message(row)

    @refusals_abort
    def GetJob(
        self, request: operator_pb2.JobRef, context: grpc.ServicerContext
    ) -> operator_pb2.Job:
        job = self._job(request.job_id)
        contact = dict(self.state.store.suppliers(withdrawn=True))
        tasks = [
            operator_pb2.TaskProgress(
                task_id=t.task_id,
                supplier=t.supplier,
                kind=t.kind,
                state=t.state,
                created_at=t.created_at,
                error=t.error,
                supplier_last_contact=contact.get(t.supplier) or "",
            )
            for t in self.state.store.tasks_of_job(job.job_id)
        ]
        reply = job_message(job, with_spec=True)
        reply.tasks.extend(tasks)
        return reply

    @refusals_abort
    def ListJobs(
        self, request: operator_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> operator_pb2.JobList:
        if request.state and request.state not in set(JobState):
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown state {request.state!r}; states are {[s.value for s in JobState]}",
            )
        asked = page_request(request.page_size, request.page_token)
        page = self.state.store.jobs(request.state, after=asked.after, limit=asked.limit)
        return operator_pb2.JobList(
            jobs=[job_message(j) for j in page.rows], next_page_token=page_token(page.next_after)
        )

    @refusals_abort
    def CancelJob(
        self, request: operator_pb2.JobRef, context: grpc.ServicerContext
    ) -> operator_pb2.Job:
        principal = principal_of(context, self.state.config.federation)
        job = self._job(request.job_id)
        ended = self.state.end_job(
            job.job_id, JobState.CANCELLED, f"cancelled by {principal.uri}", principal.uri
        )
        if ended is None:
            job = self._job(request.job_id)
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION, f"job {job.job_id} already {job.state}"
            )
        log.info("job %s cancelled by %s", ended.job_id, principal.uri)
        return job_message(ended)

    @refusals_abort
    def ListSuppliers(
        self, request: operator_pb2.ListSuppliersRequest, context: grpc.ServicerContext
    ) -> operator_pb2.SupplierList:
        return operator_pb2.SupplierList(
            suppliers=[
                operator_pb2.Supplier(name=name, last_contact=last or "")
                for name, last in self.state.store.suppliers()
            ]
        )

    @refusals_abort
    def ListCandidates(
        self, request: operator_pb2.ListCandidatesRequest, context: grpc.ServicerContext
    ) -> operator_pb2.CandidateList:
        if request.job_id:
            self._job(request.job_id)
        asked = page_request(request.page_size, request.page_token)
        page = self.state.store.candidates(request.job_id, after=asked.after, limit=asked.limit)
        return operator_pb2.CandidateList(
            candidates=[candidate_message(c) for c in page.rows],
            next_page_token=page_token(page.next_after),
        )

    @refusals_abort
    def ListReleases(
        self, request: common_pb2.ListReleasesRequest, context: grpc.ServicerContext
    ) -> common_pb2.ReleaseList:
        return release_page(self.state, request, withdrawn=True)

    @refusals_abort
    def WithdrawRelease(
        self, request: operator_pb2.WithdrawReleaseRequest, context: grpc.ServicerContext
    ) -> common_pb2.ReleaseSummary:
        principal = principal_of(context, self.state.config.federation)
        reason = request.reason.strip()
        if not 0 < len(reason) <= MAX_REASON or not reason.isprintable():
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a withdrawal needs a reason of 1 to {MAX_REASON} printable characters",
            )
        before = self.state.store.release(request.release_id)
        if before is None:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no release {request.release_id!r}")
        row = self.state.store.withdraw_release(request.release_id, principal.uri, reason)
        assert row is not None
        if before.withdrawn_at is None:
            self.state.audit.append(
                principal.uri, "release.withdrawn", row.release_id, reason=reason
            )
            log.info("release %s withdrawn by %s: %s", row.release_id, principal.uri, reason)
        return release_summary(row)
