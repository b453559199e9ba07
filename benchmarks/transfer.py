"""Bulk transfer through the broker against bare gRPC streams and a local file copy.

Moves a generated Parquet file (default 1 GiB) up through the real supplier upload path
(chunking, SHA-256 on both sides, disk writes, resume bookkeeping), twice: hashed on the client
while it streams, as `upload_file` does for a file of unknown hash, and with its hash declared,
as an agent sends its synthetic output (it hashed the file to sign its verdict, so the client
only reads and sends while the broker hashes). Then down through the real consumer pull path
(attestation check, streaming, SHA-256, atomic write), over mutual TLS on loopback against a
broker process. In the same run it measures the ceiling: a bare gRPC stream of the same number
of bytes, in chunks of the same size, over mutual TLS with no processing, the same over an
insecure channel, and a plain local file copy. Each run through the broker is paired with a run
of the bare mTLS stream just before it, and the median of the pairs' speed ratios is the
fraction of the ceiling: the machine's speed drifts between minutes, so the fastest of each
measured at different times would compare two machines; a warm-up run of our path, reported
but left out, goes first. From the CPU seconds of the bare stream and of one SHA-256 pass over
the file, it prints the largest fraction of the ceiling that any path hashing at one end (pull,
upload with a declared hash) or both (upload of a file of unknown hash) can reach with client
and server sharing this machine's cores. A smaller file is moved too, to show that peak memory
does not grow with the file size.

    python benchmarks/transfer.py [--mib 1024] [--small-mib 128] [--chunk-kib 1024]
        [--repeat 3] [--scratch /dev/shm --name transfer_tmpfs]   # broker state off the disk
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DATA, measure, write_results
from broker.config import BrokerConfig
from broker.releases import publish
from broker.state import BrokerState
from fedsynth.jobs import JobSpec
from fedsynth.operator.client import OperatorClient
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.wire.allocator import keep_large_buffers
from fedsynth.wire.channel import channel_options
from fedsynth.wire.transfer import file_digest
from fedsynth.wire.v1 import health_pb2, health_pb2_grpc

MIB = 1024 * 1024
MAX_MESSAGE = 16 * MIB
SPEC = {
    "name": "transfer-bench",
    "topology": "local",
    "suppliers": [{"supplier": "site-a", "source": "blobs"}],
    "schema": {"name": "blobs", "columns": [{"name": "payload", "kind": "text"}]},
    "synthesizer": {"name": "copula"},
    "rows": 1,
}

UPLOAD = """
import sys
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.transfer import upload_file
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import supplier_pb2
address, ca, cert, key, tasks, path, chunk, declared, attempt = sys.argv[1:10]
job_id, task_id = tasks.split(",")[int(attempt)].split(":")
channel = secure_channel(address, ca=ca, cert=cert, key=key, max_message_bytes=16 << 20)
header = supplier_pb2.UploadHeader(supplier="site-a", job_id=job_id, task_id=task_id,
    name=path.rsplit("/", 1)[-1], kind=supplier_pb2.UPLOAD_KIND_SYNTHETIC,
    sha256="" if declared == "-" else declared)
import time
started, cpu = time.perf_counter(), time.process_time()
status = upload_file(SupplierStub(channel), header, path,
                     chunk_bytes=int(chunk), timeout=3600)
RESULT = {"transfer_seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
assert status.complete, status
"""

PULL = """
import sys
from consumer_client import Client
address, ca, cert, key, release, out = sys.argv[1:7]
import time
with Client(address, ca=ca, cert=cert, key=key, timeout=3600) as client:
    started, cpu = time.perf_counter(), time.process_time()
    client.pull_to(release, out)
    RESULT = {"transfer_seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
"""

BARE_DOWN = """
import sys, grpc
from fedsynth.wire.allocator import keep_large_buffers
from fedsynth.wire.channel import channel_options
keep_large_buffers()
address, total, mode, ca, cert, key = sys.argv[1:7]
options = channel_options(16 << 20)
if mode == "mtls":
    creds = grpc.ssl_channel_credentials(open(ca, "rb").read(), open(key, "rb").read(),
                                         open(cert, "rb").read())
    channel = grpc.secure_channel(address, creds, options=options)
else:
    channel = grpc.insecure_channel(address, options=options)
import time
received = 0
started, cpu = time.perf_counter(), time.process_time()
for block in channel.unary_stream("/bench.Bare/Pull")(total.encode(), timeout=3600):
    received += len(block)
RESULT = {"transfer_seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
assert received == int(total), received
"""

BARE_UP = """
import sys, os, grpc
from fedsynth.wire.allocator import keep_large_buffers
from fedsynth.wire.channel import channel_options
keep_large_buffers()
address, total, mode, ca, cert, key, chunk = sys.argv[1:8]
options = channel_options(16 << 20)
if mode == "mtls":
    creds = grpc.ssl_channel_credentials(open(ca, "rb").read(), open(key, "rb").read(),
                                         open(cert, "rb").read())
    channel = grpc.secure_channel(address, creds, options=options)
else:
    channel = grpc.insecure_channel(address, options=options)
block = os.urandom(int(chunk))
def blocks():
    left = int(total)
    while left > 0:
        yield block[: min(left, len(block))]
        left -= len(block)
import time
started, cpu = time.perf_counter(), time.process_time()
reply = channel.stream_unary("/bench.Bare/Push")(blocks(), timeout=3600)
RESULT = {"transfer_seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
assert int(reply) == int(total), reply
"""

COPY = """
import os, shutil, sys, time
started, cpu = time.perf_counter(), time.process_time()
shutil.copyfile(sys.argv[1], sys.argv[2])
if sys.argv[3] == "fsync":
    with open(sys.argv[2], "rb") as fh:
        os.fsync(fh.fileno())
RESULT = {"transfer_seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
"""


def make_parquet(path: Path, mib: int) -> Path:
    """A Parquet file of about `mib` MiB of incompressible bytes, written in bounded batches."""
    if path.exists():
        return path
    rng = np.random.default_rng(7)
    schema = pa.schema([("payload", pa.binary())])
    tmp = path.with_suffix(".part")
    with pq.ParquetWriter(tmp, schema, compression="none") as writer:
        for _ in range(0, mib, 32):
            rows = [rng.bytes(256 * 1024) for _ in range(128)]
            writer.write_table(pa.table({"payload": pa.array(rows, pa.binary())}, schema=schema))
    tmp.replace(path)
    return path


def serve_bare(port: int, mode: str, ca: str, cert: str, key: str, chunk: int) -> None:
    """A gRPC server that streams or swallows raw bytes with no processing (the ceiling), its
    allocator tuned as the broker's is."""
    keep_large_buffers()
    block = os.urandom(chunk)

    def pull(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        left = int(request)
        while left > 0:
            yield block[: min(left, chunk)]
            left -= chunk

    def push(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return str(sum(len(b) for b in requests)).encode()

    server = grpc.server(futures.ThreadPoolExecutor(4), options=channel_options(MAX_MESSAGE))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "bench.Bare",
                {
                    "Pull": grpc.unary_stream_rpc_method_handler(pull),
                    "Push": grpc.stream_unary_rpc_method_handler(push),
                },
            )
        ]
    )
    address = f"127.0.0.1:{port}"
    if mode == "mtls":
        creds = grpc.ssl_server_credentials(
            [(Path(key).read_bytes(), Path(cert).read_bytes())],
            root_certificates=Path(ca).read_bytes(),
            require_client_auth=True,
        )
        server.add_secure_port(address, creds)
    else:
        server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    if match is None:
        raise RuntimeError(f"no VmHWM for process {pid}")
    return int(match.group(1)) / 1024


def start_broker(root: Path, pki: FederationCA, chunk: int) -> tuple[subprocess.Popen, Path, str]:
    cert, key = pki.paths_for(Role.BROKER, "broker")
    address, health = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = {
        "federation": pki.federation,
        "listen": address,
        "health_listen": health,
        "state_dir": str(root / "state"),
        "key_file": str(root / "state" / "at-rest.key"),
        "tls": {
            "ca": str(pki.directory / "ca.pem"),
            "cert": str(cert),
            "key": str(key),
            "crl": str(pki.crl_path),
        },
        "suppliers": ["site-a"],
        "limits": {
            "max_message_bytes": MAX_MESSAGE,
            "chunk_bytes": chunk,
            "max_upload_bytes": 64 * 1024 * MIB,
        },
    }
    config_path = root / "broker.yaml"
    config_path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(config_path)],
        cwd=Path(__file__).resolve().parent.parent,
        stderr=subprocess.DEVNULL,
    )
    with grpc.insecure_channel(health) as channel:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=60
        )
    return proc, config_path, address


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a running process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


HASH = """
import sys, time
from fedsynth.wire.transfer import file_digest
started, cpu = time.perf_counter(), time.process_time()
file_digest(sys.argv[1])
RESULT = {"transfer_seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
"""


@dataclass
class Measurement:
    """A child program run again and again, with the CPU seconds its server spends in each run.
    `numbered` passes each run its number as a last argument (each upload takes its own task)."""

    code: str
    args: list[str]
    server_pid: int | None = None
    numbered: bool = False
    runs: list[dict[str, float]] = field(default_factory=list)
    started: int = 0
    first_run_seconds: float | None = None

    def once(self) -> dict[str, float]:
        before = process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
        numbered = [str(self.started)] if self.numbered else []
        self.started += 1
        result = measure(self.code, *self.args, *numbered)
        if self.server_pid:
            result["server_cpu"] = process_cpu_seconds(self.server_pid) - before
        self.runs.append(result)
        return result

    def warm_up(self) -> None:
        """One run left out of the results: the first big transfer through a freshly started
        broker is up to a third slower, as its threads touch memory for the first time (a
        serving broker did so long before); its seconds are kept as `first_run_seconds`."""
        self.first_run_seconds = self.once()["transfer_seconds"]
        self.runs.pop()

    def best(self) -> dict[str, float]:
        """The fastest run (the least disturbed by other work on the machine), with the peak
        memory of the hungriest and every run's seconds."""
        fastest = min(self.runs, key=lambda r: r["transfer_seconds"])
        warm_up = (
            {} if self.first_run_seconds is None else {"first_run_seconds": self.first_run_seconds}
        )
        return {
            **fastest,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in self.runs),
            "runs_seconds": [r["transfer_seconds"] for r in self.runs],
            **warm_up,
        }


def best_of(repeat: int, measurement: Measurement) -> dict[str, float]:
    for _ in range(repeat):
        measurement.once()
    return measurement.best()


def paired(repeat: int, ceiling: Measurement, ours: Measurement) -> list[float]:
    """After a warm-up run of our path, run the ceiling and our path in turn, so that each pair
    meets the machine in the same state (its speed drifts by up to half from minute to minute);
    each pair's speed ratio."""
    ours.warm_up()
    fractions = []
    for _ in range(repeat):
        bare_seconds = ceiling.once()["transfer_seconds"]
        fractions.append(bare_seconds / ours.once()["transfer_seconds"])
    return fractions


@contextmanager
def bare_server(mode: str, pki: FederationCA, chunk: int) -> Iterator[tuple[str, int]]:
    """A bare byte-streaming server (the ceiling) in its own process: (address, pid)."""
    cert, key = pki.paths_for(Role.BROKER, "broker")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--bare-server",
            str(port),
            mode,
            str(pki.directory / "ca.pem"),
            str(cert),
            str(key),
            str(chunk),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield f"127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait()


def cpu_bound_fraction(bare_row: dict[str, Any], hashes: int, hash_cpu: float) -> float:
    """The largest fraction of the bare stream's speed that a path doing its work plus `hashes`
    SHA-256 passes can reach when client and server share this machine's cores."""
    least_cpu = bare_row["cpu"] + bare_row["server_cpu"] + hashes * hash_cpu
    fastest = least_cpu / (os.cpu_count() or 1)
    return bare_row["transfer_seconds"] / max(fastest, bare_row["transfer_seconds"])


def run(mib: int, small_mib: int, chunk: int, scratch_root: Path, repeat: int) -> dict[str, Any]:
    DATA.mkdir(parents=True, exist_ok=True)
    files = {
        size: make_parquet(DATA / f"transfer_{size}MiB.parquet", size) for size in (mib, small_mib)
    }
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="transfer-run-") as scratch:
        root = Path(scratch)
        pki = FederationCA.init(root / "pki", "bench")
        pki.issue(Role.BROKER, "broker", ip_addresses=("127.0.0.1",))
        pki.issue(Role.SUPPLIER, "site-a")
        pki.issue(Role.OPERATOR, "ops")
        pki.issue(Role.CONSUMER, "reader")
        ca = str(pki.directory / "ca.pem")
        reader = [ca, *map(str, pki.paths_for(Role.CONSUMER, "reader"))]
        big = files[mib]
        total = big.stat().st_size
        rows: list[dict[str, Any]] = []
        with bare_server("insecure", pki, chunk) as (address, pid):
            for direction, code, extra in (("down", BARE_DOWN, []), ("up", BARE_UP, [str(chunk)])):
                args = [address, str(total), "insecure", *reader, *extra]
                row = best_of(repeat, Measurement(code, args, pid))
                rows.append(
                    {"path": "bare gRPC stream (insecure)", "direction": direction, "bytes": total}
                    | row
                )
        copy_to = root / "copy.parquet"
        for sync in ("nosync", "fsync"):
            copy = best_of(repeat, Measurement(COPY, [str(big), str(copy_to), sync]))
            copy_to.unlink()
            label = "local file copy" + (" + fsync" if sync == "fsync" else "")
            rows.append({"path": label, "direction": "-", "bytes": total, **copy})
        hashing = best_of(repeat, Measurement(HASH, [str(big)]))
        rows.append({"path": "SHA-256 of the file", "direction": "-", "bytes": total, **hashing})
        proc, config_path, address = start_broker(root, pki, chunk)
        try:
            with bare_server("mtls", pki, chunk) as (bare_address, bare_pid):
                rows += through_broker(
                    Broker(proc.pid, config_path, address, pki, root),
                    files,
                    chunk,
                    repeat,
                    (bare_address, bare_pid),
                )
        finally:
            proc.terminate()
            proc.wait()
    hash_cpu = hashing["cpu"]
    for row in rows:
        row["mb_per_s"] = row["bytes"] / 1e6 / row["transfer_seconds"]
        if row["path"].startswith("bare gRPC stream (mtls"):
            one_hash = hash_cpu * row["bytes"] / total
            row["cpu_bound_fraction"] = cpu_bound_fraction(row, 1, one_hash)
            if row["direction"] == "up":
                row["cpu_bound_fraction_two_hashes"] = cpu_bound_fraction(row, 2, one_hash)
    return {
        "file_mib": mib,
        "small_file_mib": small_mib,
        "chunk_bytes": chunk,
        "scratch": str(scratch_root),
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "rows": rows,
    }


@dataclass(frozen=True)
class Broker:
    """A running broker process and what it takes to reach it."""

    pid: int
    config_path: Path
    address: str
    pki: FederationCA
    scratch: Path


def pending_task(state: BrokerState, job_id: str, supplier: str, wait_s: float = 30.0) -> str:
    """The task the broker queued for `supplier` in `job_id`: uploads must name one."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for task in state.store.tasks_of_job(job_id):
            if task.supplier == supplier and task.state == "pending":
                return task.task_id
        time.sleep(0.1)
    raise RuntimeError(f"the broker queued no task for {supplier} in job {job_id}")


def through_broker(
    broker: Broker,
    files: dict[int, Path],
    chunk: int,
    repeat: int,
    bare_server_at: tuple[str, int],
) -> list[dict[str, Any]]:
    """Each file up through the supplier path and down through the consumer path, each run
    paired with a bare mTLS stream of the same bytes."""
    pki, address, broker_pid = broker.pki, broker.address, broker.pid
    bare_address, bare_pid = bare_server_at
    ca = str(pki.directory / "ca.pem")
    reader = [*map(str, pki.paths_for(Role.CONSUMER, "reader"))]
    ops_ids = pki.paths_for(Role.OPERATOR, "ops")
    state = BrokerState.open(BrokerConfig.load(broker.config_path))

    def fresh_tasks(count: int) -> list[tuple[str, str]]:
        """(job, task) of `count` new jobs: a task takes one upload, so each run has its own."""
        with OperatorClient(address, ca=ca, cert=ops_ids[0], key=ops_ids[1]) as ops:
            jobs = [ops.submit(JobSpec.model_validate(SPEC)).job_id for _ in range(count)]
        return [(job, pending_task(state, job, "site-a")) for job in jobs]

    rows: list[dict[str, Any]] = []
    try:
        for size, path in sorted(files.items(), reverse=True):
            nbytes = path.stat().st_size
            sup = pki.paths_for(Role.SUPPLIER, "site-a")
            bare_args = [bare_address, str(nbytes), "mtls", ca, *reader]
            bare_up = Measurement(BARE_UP, [*bare_args, str(chunk)], bare_pid)
            digest = file_digest(path).sha256
            uploads: dict[str, tuple[Measurement, list[float]]] = {}
            for label, declared in (("broker upload", "-"), ("upload, hash declared", digest)):
                tasks = ",".join(f"{job}:{task}" for job, task in fresh_tasks(repeat + 1))
                job_id = tasks.split(":", 1)[0]
                upload = Measurement(
                    UPLOAD,
                    [address, ca, *map(str, sup), tasks, str(path), str(chunk), declared],
                    broker_pid,
                    numbered=True,
                )
                uploads[label] = (upload, paired(repeat, bare_up, upload))
            published = publish(
                state,
                job_id=job_id,
                name=path.stem,
                dataset=path,
                audit_report_json=json.dumps({"verdict": "pass"}).encode(),
                audit_html=b"<html></html>",
                job_spec_hash=digest,
                topology="local",
                synthesizer="copula",
                privacy_spent={},
            )
            out = broker.scratch / "pulled.parquet"
            bare_down = Measurement(BARE_DOWN, bare_args, bare_pid)
            pull = Measurement(
                PULL, [address, ca, *reader, published.release_id, str(out)], broker_pid
            )
            pulls = {"consumer pull": (pull, paired(repeat, bare_down, pull))}
            assert file_digest(out).sha256 == published.attestation["dataset"]["sha256"]
            out.unlink()
            for direction, bare, ours in (("up", bare_up, uploads), ("down", bare_down, pulls)):
                common = {"direction": direction, "bytes": nbytes}
                rows.append(
                    {"path": f"bare gRPC stream (mtls, {size} MiB)", **common, **bare.best()}
                )
                for label, (measured, fractions) in ours.items():
                    rows.append(
                        {
                            "path": f"{label} ({size} MiB)",
                            **common,
                            **measured.best(),
                            "broker_peak_rss_mib": peak_rss_mib(broker_pid),
                            "paired_fractions": fractions,
                            "fraction_of_mtls_ceiling": statistics.median(fractions),
                        }
                    )
    finally:
        state.close()
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-server":
        port, mode, ca, cert, key, chunk = sys.argv[2:8]
        serve_bare(int(port), mode, ca, cert, key, int(chunk))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="Size of the big file in MiB.")
    parser.add_argument("--small-mib", type=int, default=128, help="Size of the small file.")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="Chunk size in KiB.")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=DATA,
        help="Where the broker state and pulled files live (e.g. /dev/shm to take the disk out).",
    )
    parser.add_argument("--name", default="transfer", help="Result file name.")
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs of each measurement; the fastest counts."
    )
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.mib, args.small_mib, args.chunk_kib * 1024, args.scratch, args.repeat)
    print(
        f"{'path':32} {'dir':5} {'MB/s':>8} {'of ceiling':>10} {'client cpu/GB':>13} "
        f"{'server cpu/GB':>13} {'client MiB':>10} {'broker MiB':>10}"
    )
    for row in result["rows"]:
        fraction = row.get("fraction_of_mtls_ceiling")
        gb = row["bytes"] / 1e9
        server_cpu = f"{row['server_cpu'] / gb:.2f}" if "server_cpu" in row else "-"
        print(
            f"{row['path']:32} {row['direction']:5} {row['mb_per_s']:8.0f} "
            f"{(f'{fraction:.0%}' if fraction else '-'):>10} {row['cpu'] / gb:13.2f} "
            f"{server_cpu:>13} {row['peak_rss_mib']:10.0f} "
            f"{row.get('broker_peak_rss_mib', float('nan')):10.0f}"
        )
    for row in result["rows"]:
        if "cpu_bound_fraction" in row:
            bounds = f"{row['cpu_bound_fraction']:.0%} with one SHA-256 pass added"
            if "cpu_bound_fraction_two_hashes" in row:
                bounds += f", {row['cpu_bound_fraction_two_hashes']:.0%} with two"
            print(
                f"{row['path']} {row['direction']}: for the least CPU any path can spend, "
                f"{result['cpus']} cores allow at most {bounds}"
            )
    for row in result["rows"]:
        if "first_run_seconds" in row:
            print(
                f"{row['path']}: the warm-up run left out took {row['first_run_seconds']:.2f} s, "
                f"the measured runs {', '.join(f'{x:.2f}' for x in row['runs_seconds'])} s"
            )
    result["wall_seconds"] = time.perf_counter() - started
    print(f"wrote {write_results(args.name, result)}")


if __name__ == "__main__":
    main()
