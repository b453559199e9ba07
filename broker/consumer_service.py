"""ConsumerService: the only door to released data. Candidates, uploads and every other
artifact are invisible here; an unknown or unreleased id is simply not found."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc

from broker.errors import Refusal
from broker.interceptor import principal_of
from broker.messages import release_page, release_summary
from broker.rpc import refusals_abort, stream_refusals_abort
from broker.state import BrokerState
from broker.store import ReleaseRow
from fedsynth.wire.bulk import DownloadFrame
from fedsynth.wire.transfer import ObjectDigest, stream_object
from fedsynth.wire.v1 import common_pb2, consumer_pb2, consumer_pb2_grpc

log = logging.getLogger(__name__)

PARTS = {
    consumer_pb2.RELEASE_PART_DATASET: "application/vnd.apache.parquet",
    consumer_pb2.RELEASE_PART_AUDIT_HTML: "text/html",
}


class ConsumerService(consumer_pb2_grpc.ConsumerServiceServicer):
    def __init__(self, state: BrokerState) -> None:
        self.state = state

    def _release(self, release_id: str) -> ReleaseRow:
        row = self.state.store.release(release_id)
        if row is None:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no release {release_id!r}")
        if row.withdrawn_at is not None:
            raise Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"release {release_id!r} was withdrawn on {row.withdrawn_at}: "
                f"{row.withdrawn_reason}",
            )
        return row

    def _stored(self, row: ReleaseRow, sha256: str) -> Path:
        """The path of one of a release's objects; DATA_LOSS, logged and audited, when the
        broker's store has lost it (the consumer learns no path of the broker's disk)."""
        path = self.state.artifacts.path(sha256)
        if path.is_file():
            return path
        log.error("release %s: stored object %s is missing at %s", row.release_id, sha256, path)
        self.state.audit.append(
            self.state.config.uri, "release.object_missing", row.release_id, sha256=sha256
        )
        raise Refusal(
            grpc.StatusCode.DATA_LOSS,
            f"release {row.release_id!r}: the broker has lost one of its stored objects; its "
            "operator must restore the broker's artifacts from backup",
        )

    @refusals_abort
    def ListReleases(
        self, request: common_pb2.ListReleasesRequest, context: grpc.ServicerContext
    ) -> common_pb2.ReleaseList:
        return release_page(self.state, request, withdrawn=False)

    @refusals_abort
    def GetRelease(
        self, request: common_pb2.ReleaseRef, context: grpc.ServicerContext
    ) -> common_pb2.ReleaseManifest:
        row = self._release(request.release_id)
        return common_pb2.ReleaseManifest(
            summary=release_summary(row),
            attestation_json=row.attestation_json,
            signature=row.signature,
            broker_certificate_pem=row.broker_certificate_pem,
            audit_report_json=self._stored(row, row.report_sha256).read_bytes(),
        )

    @stream_refusals_abort
    def Download(
        self, request: consumer_pb2.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[DownloadFrame]:
        principal = principal_of(context, self.state.config.federation)
        row = self._release(request.release_id)
        if request.part not in PARTS:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "part must be DATASET or AUDIT_HTML")
        sha = (
            row.dataset_sha256
            if request.part == consumer_pb2.RELEASE_PART_DATASET
            else row.html_sha256
        )
        path = self._stored(row, sha)
        digest = ObjectDigest(sha, path.stat().st_size)
        if request.offset > digest.size:
            raise Refusal(
                grpc.StatusCode.OUT_OF_RANGE,
                f"offset {request.offset} is past the end ({digest.size} bytes)",
            )
        self.state.audit.append(
            principal.uri,
            "release.pulled" if request.offset == 0 else "release.pull_resumed",
            row.release_id,
            part=consumer_pb2.ReleasePart.Name(request.part),
            offset=request.offset,
        )
        served = stream_object(
            path,
            digest,
            request.offset,
            media_type=PARTS[request.part],
            chunk_bytes=self.state.config.limits.chunk_bytes,
        )
        yield from self._while_served(row.release_id, served)

    def _while_served(
        self, release_id: str, frames: Iterator[DownloadFrame]
    ) -> Iterator[DownloadFrame]:
        """`frames`, ended with NOT_FOUND at the first chunk after the release is withdrawn."""
        for frame in frames:
            if self.state.store.is_withdrawn(release_id):
                self._release(release_id)
            yield frame
