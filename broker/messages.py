"""Store rows to wire messages."""

from __future__ import annotations

from broker.paging import page_request, page_token
from broker.state import BrokerState
from broker.store import CandidateRow, JobRow, ReleaseRow
from fedsynth.wire.v1 import common_pb2, operator_pb2


def job_message(row: JobRow, *, with_spec: bool = False) -> operator_pb2.Job:
    return operator_pb2.Job(
        job_id=row.job_id,
        name=row.name,
        state=row.state,
        topology=row.topology,
        spec_sha256=row.spec_sha256,
        submitted_by=row.submitted_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        reason=row.reason,
        spec_json=row.spec_json if with_spec else b"",
    )


def candidate_message(row: CandidateRow) -> operator_pb2.Candidate:
    return operator_pb2.Candidate(
        candidate_id=row.candidate_id,
        job_id=row.job_id,
        verdict=row.verdict,
        reasons=list(row.reasons),
        dataset_sha256=row.dataset_sha256,
        release_id=row.release_id or "",
        created_at=row.created_at,
    )


def release_summary(row: ReleaseRow) -> common_pb2.ReleaseSummary:
    return common_pb2.ReleaseSummary(
        release_id=row.release_id,
        job_id=row.job_id,
        name=row.name,
        dataset_sha256=row.dataset_sha256,
        dataset_size=row.dataset_size,
        topology=row.topology,
        synthesizer=row.synthesizer,
        created_at=row.created_at,
        withdrawn_at=row.withdrawn_at or "",
        withdrawn_reason=row.withdrawn_reason,
    )


def release_page(
    state: BrokerState, request: common_pb2.ListReleasesRequest, *, withdrawn: bool
) -> common_pb2.ReleaseList:
    """The page of releases `request` asks for; withdrawn ones only when `withdrawn` (operators
    see them, consumers do not)."""
    asked = page_request(request.page_size, request.page_token)
    page = state.store.releases(after=asked.after, limit=asked.limit, withdrawn=withdrawn)
    return common_pb2.ReleaseList(
        releases=[release_summary(r) for r in page.rows],
        next_page_token=page_token(page.next_after),
    )
