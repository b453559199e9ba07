"""Start a real broker process on 127.0.0.1 with a real federation PKI, for tests and benchmarks."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from broker.auditlog import AuditLog
from broker.releases import Published, publish
from broker.state import BrokerState
from broker.store import Database, JobRow, Store
from fedsynth.jobs import JobSpec
from fedsynth.security.atrest import create_key_file
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.v1 import (
    health_pb2,
    health_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
    supplier_pb2,
    supplier_pb2_grpc,
)

REPO = Path(__file__).resolve().parents[2]
FEDERATION = "testfed"
SUPPLIERS = ("hospital-a", "hospital-b")


POLL_S = 0.2
"""How often a test asks the broker process whether something it waits for has happened."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BrokerProcess:
    """A broker subprocess and everything a test needs to talk to it."""

    root: Path
    pki: FederationCA
    config_path: Path
    address: str
    health_address: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def identity(self, role: Role, name: str) -> dict[str, Path]:
        cert, key = self.pki.paths_for(role, name)
        return {"ca": self.pki.directory / "ca.pem", "cert": cert, "key": key}

    def channel(self, role: Role, name: str) -> grpc.Channel:
        return secure_channel(self.address, **self.identity(role, name))

    def start(self, *, max_file_bytes: int | None = None) -> None:
        """Start the broker and wait until it serves; `max_file_bytes` caps every file it
        writes (RLIMIT_FSIZE), which a write past it finds as a full disk."""

        def limit_files() -> None:
            if max_file_bytes is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "serve", "--config", str(self.config_path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "broker.log", "ab"),  # noqa: SIM115
            preexec_fn=limit_files,
        )
        try:
            self.wait_for_health(health_pb2.HealthCheckResponse.SERVING, timeout=120)
        except BaseException:
            self.stop()  # a broker that never answered must not outlive the test run
            raise

    def wait_for_health(self, status: int, timeout: float) -> None:
        """Return once the health service reports `status`, following its Watch stream (on the
        plaintext health port, as an orchestrator's probe does); fail after `timeout`."""
        with grpc.insecure_channel(self.health_address) as channel:
            updates = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=timeout
            )
            try:
                if any(update.status == status for update in updates):
                    return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            finally:
                updates.cancel()
        raise AssertionError(f"the broker never reported health {status} in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def serve_once(self) -> subprocess.CompletedProcess[str]:
        """`serve` in the foreground, for a broker expected to refuse to start."""
        return self.run_cli("serve", timeout=120)

    def run_cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "broker.cli", *args, "--config", str(self.config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def connection_args(broker: BrokerProcess, role: Role, name: str) -> list[str]:
    """The client options that reach `broker` as `name` of `role`."""
    ids = broker.identity(role, name)
    return [
        "--broker",
        broker.address,
        "--ca",
        str(ids["ca"]),
        "--cert",
        str(ids["cert"]),
        "--key",
        str(ids["key"]),
    ]


def make_broker(root: Path, **limits: int) -> BrokerProcess:
    pki = FederationCA.init(root / "pki", FEDERATION)
    pki.issue(Role.BROKER, "broker", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    for name in (*SUPPLIERS, "not-enrolled"):
        pki.issue(Role.SUPPLIER, name)
    pki.issue(Role.OPERATOR, "ops")
    pki.issue(Role.CONSUMER, "alice")
    broker_cert, broker_key = pki.paths_for(Role.BROKER, "broker")
    address = f"127.0.0.1:{free_port()}"
    health_address = f"127.0.0.1:{free_port()}"
    config = {
        "federation": FEDERATION,
        "listen": address,
        "health_listen": health_address,
        "state_dir": "state",
        "key_file": "state/at-rest.key",
        "tls": {
            "ca": str(pki.directory / "ca.pem"),
            "cert": str(broker_cert),
            "key": str(broker_key),
            "crl": str(pki.crl_path),
        },
        "suppliers": list(SUPPLIERS),
        "limits": {
            "max_message_bytes": 256 * 1024,
            "chunk_bytes": 64 * 1024,
            "max_upload_bytes": 4 * 1024 * 1024,
            **limits,
        },
    }
    config_path = root / "broker.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return BrokerProcess(root, pki, config_path, address, health_address)


def job_spec(name: str = "patients-demo", suppliers: tuple[str, ...] = SUPPLIERS) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": name,
            "topology": "central",
            "suppliers": [{"supplier": s, "source": "patients"} for s in suppliers],
            "schema": {
                "name": "patients",
                "columns": [
                    {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
                    {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
                ],
            },
            "synthesizer": {"name": "copula"},
            "rows": 100,
        }
    )


OPERATOR_URI = f"spiffe://{FEDERATION}/operator/ops"


def state_with_log(
    state_dir: Path, entries: Iterable[tuple[str, str, str, dict[str, Any]]]
) -> None:
    """A broker state dir, no broker running, whose audit log holds `entries` (actor, action,
    subject, detail), under a fresh at-rest key."""
    state_dir.mkdir()
    create_key_file(state_dir / "at-rest.key")
    db = Database(state_dir / "broker.sqlite3")
    Store(db)
    log = AuditLog(db, (state_dir / "at-rest.key").read_bytes(), state_dir / "audit-head.json")
    for actor, action, subject, detail in entries:
        log.append(actor, action, subject, **detail)
    db.close()


def stored_job(state: BrokerState, spec: JobSpec) -> JobRow:
    """A job written straight into the broker's store, as SubmitJob would have it."""
    return state.store.create_job(
        name=spec.name,
        topology=spec.topology.value,
        spec_json=spec.canonical_json(),
        spec_sha256=spec.spec_hash,
        submitted_by=OPERATOR_URI,
    )


def released(
    state: BrokerState,
    job_id: str,
    name: str,
    dataset: bytes,
    schema: dict[str, Any] | None = None,
) -> Published:
    """A release of `dataset` (attesting `schema`) for `job_id` whose audit passed, published
    straight through the broker's state."""
    return publish(
        state,
        job_id=job_id,
        name=name,
        dataset=dataset,
        audit_report_json=b'{"verdict": "pass"}',
        audit_html=b"<html/>",
        job_spec_hash="a" * 64,
        topology="local",
        synthesizer="copula",
        privacy_spent={},
        schema=schema,
    )


def submit_job(
    broker: BrokerProcess, name: str = "patients-demo", suppliers: tuple[str, ...] = SUPPLIERS
) -> str:
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
    spec = job_spec(name, suppliers)
    reply = stub.SubmitJob(
        operator_pb2.SubmitJobRequest(spec_json=spec.canonical_json()), timeout=20
    )
    return reply.job_id


def supplier_stub(broker: BrokerProcess, name: str) -> supplier_pb2_grpc.SupplierServiceStub:
    """Supplier `name`'s stub, on its own certificate."""
    return supplier_pb2_grpc.SupplierServiceStub(broker.channel(Role.SUPPLIER, name))


def next_task(
    broker: BrokerProcess, name: str, job_id: str, kind: str, timeout_s: float = 60.0
) -> supplier_pb2.Task:
    """Supplier `name`'s next task of `kind` in job `job_id`, as its agent would receive it."""
    stream = supplier_stub(broker, name).Subscribe(
        supplier_pb2.SubscribeRequest(supplier=name), timeout=timeout_s
    )
    try:
        return next(t for t in stream if t.job_id == job_id and t.kind == kind)
    finally:
        stream.cancel()


def ended_job(broker: BrokerProcess, job_id: str, timeout_s: float = 120.0) -> operator_pb2.Job:
    """The job once it has ended, as operators see it. The broker is another process, so this
    polls GetJob (every POLL_S) rather than waiting on an event."""
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
    deadline = time.monotonic() + timeout_s
    while (job := stub.GetJob(operator_pb2.JobRef(job_id=job_id), timeout=20)).state in (
        "submitted",
        "running",
    ):
        assert time.monotonic() < deadline, f"job {job_id} did not end: {job.state}"
        time.sleep(POLL_S)
    return job


@contextmanager
def running_broker(root: Path, **limits: int) -> Iterator[BrokerProcess]:
    """A broker process under `root` (with `limits`), started, and stopped when the block
    ends."""
    process = make_broker(root, **limits)
    process.start()
    try:
        yield process
    finally:
        process.stop()
