"""SupplierService: task streams to agents, their results, uploads and artifact fetches.

A supplier acts only as itself: every request naming a supplier must name the caller. Each
supplier has at most one task stream open, and text it reports is bounded and made inert.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterator

import grpc

from broker.errors import Refusal
from broker.interceptor import principal_of
from broker.rpc import refusals_abort, stream_refusals_abort
from broker.state import BrokerState
from broker.store import TaskRow
from broker.tls import RevocationList
from fedsynth.security.principals import Principal
from fedsynth.wire.bulk import DownloadFrame
from fedsynth.wire.transfer import ObjectDigest, stream_object
from fedsynth.wire.v1 import supplier_pb2, supplier_pb2_grpc

WAKE_S = 1.0
MAX_ERROR_CHARS = 1024
MAX_CLAIMED_CHARS = 128
"""What the broker keeps of a name a supplier wrote (a name it claims, an upload it lists)."""
MAX_RESULT_BYTES = 64 * 1024
MAX_RESULT_UPLOADS = 8
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class Subscriptions:
    """At most one open task stream per supplier: a new Subscribe supersedes the one before.

    Replacing rather than refusing is what lets an agent back in after a network drop: its
    old stream may sit behind a dead TCP connection the broker notices only after keepalive
    timeouts, and a refusal would lock the agent out until then. The superseded stream ends
    with ABORTED at its next wake-up (at once: `open` wakes the task streams).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, threading.Event] = {}

    def open(self, supplier: str) -> threading.Event:
        """Register a new stream of `supplier`; the returned event is set once superseded."""
        superseded = threading.Event()
        with self._lock:
            previous = self._current.get(supplier)
            if previous is not None:
                previous.set()
            self._current[supplier] = superseded
        return superseded

    def close(self, supplier: str, stream: threading.Event) -> None:
        """Forget a stream that ended, unless a newer one has replaced it already."""
        with self._lock:
            if self._current.get(supplier) is stream:
                del self._current[supplier]


def inert_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Supplier-written text made safe to store, log and show: control and line-breaking
    characters escaped (a newline becomes a literal `\\n`, so no fake log line can start), and
    at most `limit` characters, the cut said at the end."""
    escaped = "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in CONTROL_CATEGORIES
        else ch
        for ch in text[: limit + 1]
    )
    if len(escaped) <= limit and len(text) <= limit:
        return escaped
    return f"{escaped[:limit]}... [cut: {len(text)} characters sent]"


def _check_result_size(request: supplier_pb2.TaskResult) -> None:
    """A result is a small JSON document naming at most a task's one upload: anything larger
    is refused before it is stored, logged or parsed on every pass of the job runner."""
    if len(request.result_json) > MAX_RESULT_BYTES or len(request.uploads) > MAX_RESULT_UPLOADS:
        raise Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"a task result holds at most {MAX_RESULT_BYTES} bytes of JSON and names at most "
            f"{MAX_RESULT_UPLOADS} uploads; this one has {len(request.result_json)} bytes and "
            f"{len(request.uploads)} uploads",
        )


class SupplierService(supplier_pb2_grpc.SupplierServiceServicer):
    def __init__(self, state: BrokerState, revocations: RevocationList) -> None:
        self.state = state
        self.revocations = revocations
        self.subscriptions = Subscriptions()

    def _as_self(self, context: grpc.ServicerContext, supplier: str) -> Principal:
        principal = principal_of(context, self.state.config.federation)
        if supplier != principal.name:
            claimed = inert_text(supplier, MAX_CLAIMED_CHARS)
            self.state.audit.append(
                principal.uri, "access.refused", "impersonation", claimed=claimed
            )
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"supplier {principal.name!r} cannot act as {claimed!r}",
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
        """Stream the caller's pending tasks until it hangs up or a newer stream of the same
        supplier supersedes this one (see `Subscriptions`)."""
        principal = self._as_self(context, request.supplier)
        self.state.audit.append(
            principal.uri,
            "supplier.subscribed",
            principal.name,
            agent_version=inert_text(request.agent_version, 100),
        )
        superseded = self.subscriptions.open(principal.name)
        self.state.notify_tasks()
        try:
            yield from self._tasks(principal, context, superseded)
        finally:
            self.subscriptions.close(principal.name, superseded)

    def _tasks(
        self,
        principal: Principal,
        context: grpc.ServicerContext,
        superseded: threading.Event,
    ) -> Iterator[supplier_pb2.Task]:
        sent: set[str] = set()
        while context.is_active():
            if self.revocations.is_revoked(principal.serial):
                # The interceptor checks each call as it starts; a stream lives on past that.
                self.state.audit.append(principal.uri, "access.refused", "revoked stream")
                raise Refusal(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"certificate serial {principal.serial} of {principal.uri} was revoked; "
                    "get a new one (fedsynth pki issue --replace) and restart the agent",
                )
            if superseded.is_set():
                raise Refusal(
                    grpc.StatusCode.ABORTED,
                    f"a newer task stream of supplier {principal.name!r} replaced this one "
                    "(an agent reconnecting, or a second agent with the same certificate)",
                )
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
                if not superseded.is_set():
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
        """Record a task's outcome once; its error text is made inert (`inert_text`) here, as it
        reaches the job's reason, the audit log and CheckTask replies."""
        principal = self._as_self(context, request.supplier)
        task = self._own_task(principal, request.task_id)
        _check_result_size(request)
        error = inert_text(request.error)
        recorded = self.state.store.finish_task(
            task.task_id, request.ok, request.result_json, error
        )
        if recorded:
            self.state.audit.append(
                principal.uri,
                "task.result",
                task.task_id,
                job_id=task.job_id,
                ok=request.ok,
                error=error,
                uploads=[inert_text(u, MAX_CLAIMED_CHARS) for u in request.uploads],
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
