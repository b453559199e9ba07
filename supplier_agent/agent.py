"""The agent's run loop: dial out with mutual TLS, subscribe to tasks, run each one once.

The site allows outbound connections only, so the agent keeps one long-lived task stream open
and reconnects with exponential backoff and full jitter when it drops. Every task goes through
the egress gate before any data is read; a task id seen before is answered from the journal
(tasks are idempotent); outputs are kept in an outbox until delivered, so an agent restarted
mid-upload resumes the same bytes; every artifact that leaves is logged with its hash.
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import grpc
from pydantic import ValidationError

from fedsynth.plans import Party, TaskKind, plan_of
from fedsynth.progress import ProgressFactory, no_progress
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.errors import describe_rpc_error
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.transfer import (
    TransferError,
    TransferIncomplete,
    download_file,
    upload_file,
)
from fedsynth.wire.v1 import supplier_pb2
from supplier_agent.config import AgentConfig, ArtifactKind, Reconnect
from supplier_agent.egress import EgressLog, EgressRefused, check_egress, check_parties
from supplier_agent.journal import TaskJournal
from supplier_agent.outgoing import TaskClosed
from supplier_agent.rows_cache import PreparedRowsCache
from supplier_agent.tasks import (
    EGRESS,
    HANDLERS,
    Outgoing,
    TaskContext,
    TaskPayload,
    TaskRefused,
    load_outgoing,
    save_outgoing,
)

log = logging.getLogger(__name__)

PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")
"""Task and job ids name folders under state_dir: one plain name, never a path."""
TASK_CHECK_S = 2.0
"""How often, at most, long work asks the broker whether its task is still open."""
UPLOAD_KINDS = {
    ArtifactKind.RAW: supplier_pb2.UPLOAD_KIND_RAW,
    ArtifactKind.PREPARED: supplier_pb2.UPLOAD_KIND_PREPARED,
    ArtifactKind.SYNTHETIC: supplier_pb2.UPLOAD_KIND_SYNTHETIC,
    ArtifactKind.STATISTICS: supplier_pb2.UPLOAD_KIND_STATISTICS,
}


TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


REFUSED_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: (
        "the broker does not accept this agent's certificate (revoked, expired or from another "
        "federation); have the federation operator issue a new one (`fedsynth pki issue "
        "--replace`) and point tls.cert and tls.key at it"
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        "check that `name` in the agent config is the name in its certificate and that the "
        "broker's config enrolls this supplier"
    ),
}
"""Refusals that retrying cannot cure: the agent stops and says what a person must change."""


class AgentRefused(Exception):
    """The broker refuses this agent itself; reconnecting would be refused the same way."""


def backoff_delay(attempt: int, reconnect: Reconnect, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_s, initial_s * 2**attempt)]."""
    return rng.uniform(0.0, min(reconnect.max_s, reconnect.initial_s * 2.0**attempt))


class SupplierAgent:
    """A supplier site's daemon; `run` serves tasks until `stop` is called."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        seed: int | None = None,
        progress: ProgressFactory = no_progress,
    ) -> None:
        self.config = config
        self.progress = progress
        self.rows_cache = PreparedRowsCache()
        self._after_report: list[Callable[[], None]] = []
        self.journal = TaskJournal(config.state_dir / "journal.sqlite3")
        self.egress_log = EgressLog(config.state_dir / "egress.jsonl")
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._call: grpc.Future | None = None

    def stop(self) -> None:
        """Leave the run loop: cancel the open task stream and stop reconnecting."""
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def run(self) -> None:
        """Subscribe and serve tasks; reconnect with backoff whenever the stream drops.

        Raises AgentRefused when the broker refuses the agent's identity or name."""
        attempt = 0
        while not self._stop.is_set():
            try:
                attempt = self._serve(attempt)
            except (grpc.RpcError, TransferError) as exc:
                if self._stop.is_set():
                    break
                hint = REFUSED_HINTS.get(exc.code()) if isinstance(exc, grpc.Call) else None
                if hint is not None:
                    self.journal.close()
                    raise AgentRefused(
                        f"broker {self.config.broker} refused supplier {self.config.name!r}: "
                        f"{_describe(exc)}; {hint}"
                    ) from exc
                log.warning("broker %s: %s; reconnecting", self.config.broker, _describe(exc))
            delay = backoff_delay(attempt, self.config.reconnect, self._rng)
            attempt += 1
            self._stop.wait(delay)
        self.journal.close()

    def _serve(self, attempt: int) -> int:
        tls = self.config.tls
        with secure_channel(self.config.broker, ca=tls.ca, cert=tls.cert, key=tls.key) as channel:
            stub = SupplierStub(channel)
            request = supplier_pb2.SubscribeRequest(
                supplier=self.config.name, agent_version=version("fedsynth")
            )
            self._call = stub.Subscribe(request)
            try:
                for task in self._call:
                    attempt = 0
                    self.handle(stub, task)
            finally:
                self._call = None
        return attempt

    def handle(self, stub: SupplierStub, task: supplier_pb2.Task) -> None:
        """Run `task` once (or replay its recorded outcome) and report the result."""
        crafted = [i for i in (task.task_id, task.job_id) if not PLAIN_ID.fullmatch(i)]
        if crafted:
            reason = (
                f"task or job id {crafted[0]!r} is not a plain name; refused without running it"
            )
            log.error("broker %s sent %s", self.config.broker, reason)
            stub.ReportResult(
                supplier_pb2.TaskResult(
                    supplier=self.config.name, task_id=task.task_id, ok=False, error=reason
                ),
                timeout=60,
            )
            return
        recorded = self.journal.result(task.task_id)
        if recorded is None:
            log.info("task %s (%r) for job %s started", task.task_id, task.kind, task.job_id)
            ok, body = self._execute(stub, task)
            recorded = self.journal.record(task.task_id, task.job_id, ok, body)
            shutil.rmtree(self._outbox(task.task_id), ignore_errors=True)
        ok, body = recorded
        outcome = json.loads(body)
        stub.ReportResult(
            supplier_pb2.TaskResult(
                supplier=self.config.name,
                task_id=task.task_id,
                ok=ok,
                result_json=json.dumps(outcome.get("result", {})).encode(),
                error=outcome.get("error", ""),
                uploads=outcome.get("uploads", []),
            ),
            timeout=60,
        )
        log.info("task %s (%r): %s", task.task_id, task.kind, "done" if ok else outcome["error"])
        while self._after_report:
            try:
                self._after_report.pop(0)()
            except Exception:
                log.exception("site-only work after task %s failed", task.task_id)

    def _execute(self, stub: SupplierStub, task: supplier_pb2.Task) -> tuple[bool, bytes]:
        """(ok, outcome JSON). Refusals and data errors are outcomes; network errors raise."""
        try:
            kind = TaskKind(task.kind)
        except ValueError:
            return _failure(f"this agent has no handler for task kind {task.kind!r}")
        try:
            payload = TaskPayload.model_validate_json(task.payload_json)
        except ValidationError as exc:
            return _failure(f"the task payload is invalid: {exc}")
        planned = sorted({s.action for s in plan_of(payload.job) if s.party is Party.SUPPLIERS})
        if kind.value not in planned:
            return _failure(
                f"supplier {self.config.name!r} refused: task kind {kind.value!r} is no step of "
                f"this {payload.job.topology.value} job's plan ({', '.join(planned)})"
            )
        try:
            check_egress(self.config.egress, payload.job.topology, EGRESS[kind])
            check_parties(self.config.egress, payload.job, kind)
        except EgressRefused as exc:
            return _failure(f"supplier {self.config.name!r} refused: {exc}")
        workdir = self._outbox(task.task_id)
        workdir.mkdir(parents=True, exist_ok=True)
        ready = workdir / "outgoing.json"
        if ready.exists():
            outgoing = load_outgoing(ready)
        else:
            context = TaskContext(
                self.config,
                task.job_id,
                task.task_id,
                payload,
                workdir,
                lambda sha, path: self._fetch(stub, sha, path),
                self.rows_cache,
                self.progress,
                self._after_report,
                self._still_open(stub, task.task_id),
            )
            try:
                outgoing = HANDLERS[kind](context)
            except TaskRefused as exc:
                return _failure(f"supplier {self.config.name!r} refused: {exc}")
            except TaskClosed as exc:
                return _failure(f"stopped: the broker closed the task ({exc})")
            except grpc.RpcError as exc:
                return _broker_refusal(exc)
            except TransferIncomplete:
                raise
            except TransferError as exc:
                return _failure(
                    f"supplier {self.config.name!r} refused an input the broker sent: {exc}"
                )
            except Exception as exc:
                reference = secrets.token_hex(4)
                log.exception("task %s (%s) failed [%s]", task.task_id, task.kind, reference)
                return _failure(
                    f"supplier {self.config.name!r} failed: {type(exc).__name__} (the message "
                    f"stays in the site's log, reference {reference}: it may quote the site's "
                    "rows)"
                )
            save_outgoing(ready, outgoing)
        try:
            hashes, upload_ids = self._deliver(stub, task, outgoing)
        except grpc.RpcError as exc:
            return _broker_refusal(exc)
        body = {"result": {**outgoing.result, "uploads": hashes}, "uploads": upload_ids}
        return True, json.dumps(body).encode()

    def _still_open(self, stub: SupplierStub, task_id: str) -> Callable[[], None]:
        """A check that raises TaskClosed once the broker has closed the task. It asks at most
        every TASK_CHECK_S, and keeps working while the broker cannot be reached: the outcome
        is journaled and reported when it can be."""
        asked = [float("-inf")]
        ref = supplier_pb2.TaskRef(supplier=self.config.name, task_id=task_id)

        def check() -> None:
            now = time.monotonic()
            if now - asked[0] < TASK_CHECK_S:
                return
            asked[0] = now
            try:
                status = stub.CheckTask(ref, timeout=10)
            except grpc.RpcError as exc:
                log.debug("task %s: cannot ask whether it is still open: %s", task_id, exc)
                return
            if not status.open:
                raise TaskClosed(status.reason or "closed")

        return check

    def _outbox(self, task_id: str) -> Path:
        """Outputs of a task until they are delivered; removed once its outcome is recorded."""
        return self.config.state_dir / "outbox" / task_id

    def _deliver(
        self, stub: SupplierStub, task: supplier_pb2.Task, out: Outgoing
    ) -> tuple[dict[str, str], list[str]]:
        """Upload each file (resuming where the broker left off): name -> SHA-256, upload ids."""
        sent, upload_ids = {}, []
        for item in out.files:
            header = supplier_pb2.UploadHeader(
                supplier=self.config.name,
                job_id=task.job_id,
                task_id=task.task_id,
                name=f"{task.task_id}/{item.name}",
                kind=UPLOAD_KINDS[item.kind],
                media_type="application/octet-stream",
                sha256=item.sha256,
            )
            size = item.path.stat().st_size
            status = self._send(stub, header, item.path, size)
            self.egress_log.record(
                job=task.job_id,
                task=task.task_id,
                artifact=item.kind,
                sha256=status.sha256,
                size=size,
                to=self.config.broker,
            )
            log.info("sent %s: %d bytes, sha256 %s", header.name, size, status.sha256)
            sent[item.name] = status.sha256
            upload_ids.append(status.upload_id)
        return sent, upload_ids

    def _send(
        self,
        stub: SupplierStub,
        header: supplier_pb2.UploadHeader,
        path: Path,
        size: int,
    ) -> supplier_pb2.UploadStatus:
        """One upload, resumed where the broker left off, with a bar while it runs."""
        with self.progress(f"sending {header.name}", unit="bytes") as update:
            return upload_file(
                stub,
                header,
                path,
                chunk_bytes=self.config.chunk_bytes,
                timeout=600,
                on_progress=lambda done: update(done, size),
            )

    def _fetch(self, stub: SupplierStub, sha256: str, path: Path) -> Path:
        def open_stream(offset: int) -> grpc.Future:
            request = supplier_pb2.FetchArtifactRequest(
                supplier=self.config.name, sha256=sha256, offset=offset
            )
            return stub.FetchArtifact(request, timeout=600)

        with self.progress(f"fetching {path.name}", unit="bytes") as update:
            download_file(
                open_stream,
                path,
                expected_sha256=sha256,
                max_size=self.config.max_input_bytes,
                on_progress=lambda done: update(done, None),
            )
        return path


def _broker_refusal(exc: grpc.RpcError) -> tuple[bool, bytes]:
    """A broker that refuses (job ended, not allowed) ends the task; a dropped link raises."""
    if not isinstance(exc, grpc.Call) or exc.code() in TRANSIENT:
        raise exc
    return _failure(f"the broker refused: {exc.code().name}: {exc.details()}")


def _failure(reason: str) -> tuple[bool, bytes]:
    return False, json.dumps({"error": reason}).encode()


def _describe(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError):
        return describe_rpc_error(exc)
    return str(exc)
