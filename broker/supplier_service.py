"""SupplierService: task streams to agents, their results, uploads and artifact fetches.

A supplier acts only as itself: every request naming a supplier must name the caller.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from broker.errors import Refusal
from broker.interceptor import principal_of
from broker.rpc import refusals_abort, stream_refusals_abort
from broker.state import BrokerState
from broker.store import TaskRow
from fedsynth.security.principals import Principal
from fedsynth.wire.bulk import DownloadFrame
from fedsynth.wire.transfer import ObjectDigest, stream_object
from fedsynth.wire.v1 import supplier_pb2, supplier_pb2_grpc

WAKE_S = 1.0


class SupplierService(supplier_pb2_grpc.SupplierServiceServicer):
    def __init__(self, state: BrokerState) -> None:
        self.state = state

    def _as_self(self, context: grpc.ServicerContext, supplier: str) -> Principal:
        principal = principal_of(context, self.state.config.federation)
        if supplier != principal.name:
            self.state.audit.append(
                principal.uri, "access.refused", "impersonation", claimed=supplier
            )
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"supplier {principal.name!r} cannot act as {supplier!r}",
            )
        return principal

    def _own_task(self, principal: Principal, task_id: str) -> TaskRow:
        """The task `task_id`, refused unless it is assigned to the calling supplier."""
        try:
            task = self.state.store.task(task_id)
        except KeyError as exc:
            raise Refusal(grpc.StatusCode.NOT_FOUND, str(exc)) from exc
        if task.supplier != principal.name:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"task {task.task_id} is not assigned to {principal.name!r}",
            )
        return task

    @stream_refusals_abort
    def Subscribe(
        self, request: supplier_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[supplier_pb2.Task]:
        principal = self._as_self(context, request.supplier)
        self.state.audit.append(
            principal.uri,
            "supplier.subscribed",
            principal.name,
            agent_version=request.agent_version,
        )
        sent: set[str] = set()
        while context.is_active():
            for task in self.state.store.pending_tasks(principal.name):
                if task.task_id not in sent:
                    sent.add(task.task_id)
                    yield supplier_pb2.Task(
                        task_id=task.task_id,
                        job_id=task.job_id,
                        kind=task.kind,
                        payload_json=task.payload_json,
                        artifacts=list(task.artifacts),
                    )
            with self.state.tasks_changed:
                self.state.tasks_changed.wait(timeout=WAKE_S)

    @refusals_abort
    def CheckTask(
        self, request: supplier_pb2.TaskRef, context: grpc.ServicerContext
    ) -> supplier_pb2.TaskStatus:
        principal = self._as_self(context, request.supplier)
        task = self._own_task(principal, request.task_id)
        is_open = task.state == "pending"
        return supplier_pb2.TaskStatus(
            task_id=task.task_id, open=is_open, reason="" if is_open else task.error or task.state
        )

    @refusals_abort
    def ReportResult(
        self, request: supplier_pb2.TaskResult, context: grpc.ServicerContext
    ) -> supplier_pb2.Ack:
        principal = self._as_self(context, request.supplier)
        task = self._own_task(principal, request.task_id)
        recorded = self.state.store.finish_task(
            task.task_id, request.ok, request.result_json, request.error
        )
        if recorded:
            self.state.audit.append(
                principal.uri,
                "task.result",
                task.task_id,
                job_id=task.job_id,
                ok=request.ok,
                error=request.error,
                uploads=list(request.uploads),
            )
            self.state.notify_tasks()
        return supplier_pb2.Ack(
            accepted=recorded, detail="" if recorded else "result already recorded"
        )

    @refusals_abort
    def BeginUpload(
        self, request: supplier_pb2.UploadHeader, context: grpc.ServicerContext
    ) -> supplier_pb2.UploadStatus:
        principal = self._as_self(context, request.supplier)
        return self.state.uploads.begin(principal, request)

    @refusals_abort
    def Upload(
        self, request_iterator: Iterator[supplier_pb2.UploadChunk], context: grpc.ServicerContext
    ) -> supplier_pb2.UploadStatus:
        principal = principal_of(context, self.state.config.federation)
        try:
            return self.state.uploads.receive(principal, request_iterator)
        except grpc.RpcError:
            return supplier_pb2.UploadStatus()

    @stream_refusals_abort
    def FetchArtifact(
        self, request: supplier_pb2.FetchArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[DownloadFrame]:
        principal = self._as_self(context, request.supplier)
        artifacts = self.state.artifacts
        try:
            granted = self.state.store.artifact_granted(principal.name, request.sha256)
            present = granted and artifacts.has(request.sha256)
        except ValueError as exc:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        if not present:
            raise Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"no artifact {request.sha256} for supplier {principal.name!r}",
            )
        digest = ObjectDigest(request.sha256, artifacts.size(request.sha256))
        if request.offset == 0:
            self.state.audit.append(principal.uri, "artifact.fetched", request.sha256)
        yield from _bounded(
            stream_object(
                artifacts.path(request.sha256),
                digest,
                request.offset,
                chunk_bytes=self.state.config.limits.chunk_bytes,
            )
        )


def _bounded(
    messages: Iterator[DownloadFrame],
) -> Iterator[DownloadFrame]:
    try:
        yield from messages
    except ValueError as exc:
        raise Refusal(grpc.StatusCode.OUT_OF_RANGE, str(exc)) from exc
