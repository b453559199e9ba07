"""Hostile suppliers against a real broker: tables that break the schema, their row share or the
broker's memory, uploads of the wrong kind, and a candidate altered after the sites audited it.

Each supplier is driven by hand over mutual TLS with its real certificate; every attack must end
the job failed, with a reason naming the supplier, and nothing released.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from broker.config import BrokerConfig, LimitsConfig
from broker.state import BrokerState
from broker.steps import STATISTICS, JobContext, StepFailed
from broker.store import UploadRow
from consumer_client import Client
from fedsynth.jobs import JobSpec, JobState
from fedsynth.schema import TableSchema
from fedsynth.security.attestation import sign_document
from fedsynth.security.certificates import load_cert, load_key
from fedsynth.security.principals import Role
from fedsynth.synth import GaussianCopula, SufficientStats
from fedsynth.wire.v1 import (
    common_pb2,
    consumer_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
    supplier_pb2,
)
from tests.federation.harness import LENIENT_POLICY
from tests.wire.broker_harness import (
    SUPPLIERS,
    BrokerProcess,
    ended_job,
    job_spec,
    next_task,
    running_broker,
    supplier_stub,
)

HOSTILE, HONEST = SUPPLIERS
SCHEMA: dict[str, Any] = {
    "name": "patients",
    "columns": [
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
        {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
    ],
}
CHUNK = 60 * 1024
MODEL_SCHEMA = TableSchema.model_validate(SCHEMA)
"""What a federated job over SCHEMA models (SCHEMA has no identifiers or free text)."""
DEFAULTS = LimitsConfig()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("hostile")) as process:
        yield process


def submit(broker: BrokerProcess, topology: str, **extra: Any) -> str:
    spec = JobSpec.model_validate(
        {
            "name": f"hostile-{topology}",
            "topology": topology,
            "suppliers": [{"supplier": s, "source": "patients"} for s in SUPPLIERS],
            "schema": SCHEMA,
            "synthesizer": {"name": "copula"},
            "rows": 100,
            "audit_policy": LENIENT_POLICY,
            **extra,
        }
    )
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
    request = operator_pb2.SubmitJobRequest(spec_json=spec.canonical_json())
    return str(stub.SubmitJob(request, timeout=20).job_id)


def upload(
    broker: BrokerProcess, name: str, task: supplier_pb2.Task, file: str, kind: int, data: bytes
) -> str:
    """Upload `data` for `task` the way an agent does; its SHA-256."""
    stub = supplier_stub(broker, name)
    sha256 = hashlib.sha256(data).hexdigest()
    header = supplier_pb2.UploadHeader(
        supplier=name,
        job_id=task.job_id,
        task_id=task.task_id,
        name=file,
        kind=kind,
        size=len(data),
        sha256=sha256,
    )
    status = stub.BeginUpload(header, timeout=20)
    chunks = (
        supplier_pb2.UploadChunk(upload_id=status.upload_id, offset=o, data=data[o : o + CHUNK])
        for o in range(status.received, len(data), CHUNK)
    )
    if not status.complete:
        assert stub.Upload(chunks, timeout=60).complete
    return sha256


def report(broker: BrokerProcess, name: str, task: supplier_pb2.Task, result: Any) -> None:
    outcome = supplier_pb2.TaskResult(
        supplier=name, task_id=task.task_id, ok=True, result_json=json.dumps(result).encode()
    )
    assert supplier_stub(broker, name).ReportResult(outcome, timeout=20).accepted


def verdict(
    broker: BrokerProcess,
    name: str,
    task: supplier_pb2.Task,
    dataset: str,
    scores: dict[str, Any] | None = None,
) -> str:
    """A passing verdict, signed with the supplier's own key and bound to the job and dataset."""
    cert, key = broker.pki.paths_for(Role.SUPPLIER, name)
    document = {
        "format": "fedsynth.supplier-verdict/v1",
        "supplier": name,
        "job_id": task.job_id,
        "task_id": task.task_id,
        "verdict": "pass",
        "dataset_sha256": dataset,
        "report_sha256": "0" * 64,
        "failed_checks": [],
        "scores": scores or {},
    }
    return sign_document(document, load_key(key), load_cert(cert)).to_json()


def failure(broker: BrokerProcess, job_id: str) -> str:
    """The reason the job failed, once it ended; asserts it failed and released nothing."""
    job = ended_job(broker, job_id)
    assert job.state == "failed", (job.state, job.reason)
    consumer = consumer_pb2_grpc.ConsumerServiceStub(broker.channel(Role.CONSUMER, "alice"))
    releases = consumer.ListReleases(common_pb2.ListReleasesRequest(), timeout=20).releases
    assert all(r.job_id != job_id for r in releases)
    return str(job.reason)


def parquet(table: pd.DataFrame | pa.Table) -> bytes:
    buffer = io.BytesIO()
    if isinstance(table, pd.DataFrame):
        table.to_parquet(buffer, index=False)
    else:
        pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def people(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 90, rows), "sex": rng.choice(["F", "M"], rows)})


def send_synthetic(
    broker: BrokerProcess,
    job_id: str,
    parts: dict[str, pd.DataFrame],
    rows: dict[str, int],
    scores: dict[str, Any] | None = None,
) -> None:
    """Each supplier uploads its synthetic part, reports `rows` and signs its own pass (with
    `scores`)."""
    for name, frame in parts.items():
        task = next_task(broker, name, job_id, "synthesize_locally")
        kind = supplier_pb2.UPLOAD_KIND_SYNTHETIC
        sha = upload(broker, name, task, "synthetic.parquet", kind, parquet(frame))
        result = {"uploads": {"synthetic.parquet": sha}, "rows": rows[name]}
        signed = verdict(broker, name, task, sha, scores)
        report(broker, name, task, {**result, "verdict": signed})


def send_rows(broker: BrokerProcess, job_id: str, step: str, parts: dict[str, bytes]) -> None:
    """Each supplier uploads its raw or prepared rows for the job's upload step."""
    kinds = {"upload_raw": supplier_pb2.UPLOAD_KIND_RAW}
    kind = kinds.get(step, supplier_pb2.UPLOAD_KIND_PREPARED)
    file = "raw.parquet" if step == "upload_raw" else "prepared.parquet"
    for name, data in parts.items():
        task = next_task(broker, name, job_id, step)
        report(
            broker, name, task, {"uploads": {file: upload(broker, name, task, file, kind, data)}}
        )


def test_local_part_with_out_of_range_values_fails_the_job_naming_supplier_and_column(
    broker: BrokerProcess,
) -> None:
    job_id = submit(broker, "local")
    poisoned = pd.DataFrame({"age": [-999_999] * 49 + [10**15], "sex": ["F"] * 50})
    send_synthetic(
        broker, job_id, {HOSTILE: poisoned, HONEST: people(50)}, {HOSTILE: 50, HONEST: 50}
    )
    reason = failure(broker, job_id)
    assert f"{HOSTILE}'s synthetic part" in reason
    assert "column 'age': 49 value(s) below the minimum 0, 1 value(s) above the maximum 120" in (
        reason
    )


def test_the_release_page_escapes_the_job_name_and_what_suppliers_signed(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    name = "<img src=x onerror=alert(1)>"
    job_id = submit(broker, "local", name=name)
    hostile_scores = {"fidelity": "<script>steal()</script>", "column_shapes": 0.91}
    send_synthetic(
        broker,
        job_id,
        {HOSTILE: people(50), HONEST: people(50, seed=1)},
        {HOSTILE: 50, HONEST: 50},
        hostile_scores,
    )
    assert ended_job(broker, job_id).state == "succeeded"
    ids = broker.identity(Role.CONSUMER, "alice")
    with Client(broker.address, **ids) as client:
        release = next(r for r in client.list() if r.job_id == job_id)
        client.audit_html_to(release.release_id, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "<img" not in page and "<script" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<td>0.910</td>" in page


def test_local_parts_follow_the_suppliers_weights(broker: BrokerProcess) -> None:
    weights = {HOSTILE: 3.0, HONEST: 1.0}
    job_id = submit(
        broker,
        "local",
        suppliers=[{"supplier": s, "source": "patients", "weight": w} for s, w in weights.items()],
    )
    asked = {
        name: json.loads(next_task(broker, name, job_id, "synthesize_locally").payload_json)["rows"]
        for name in weights
    }
    assert asked == {HOSTILE: 75, HONEST: 25}
    operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops")).CancelJob(
        operator_pb2.JobRef(job_id=job_id), timeout=20
    )


def test_local_part_larger_than_its_share_fails_the_job(broker: BrokerProcess) -> None:
    job_id = submit(broker, "local")
    send_synthetic(
        broker, job_id, {HOSTILE: people(5000), HONEST: people(50)}, {HOSTILE: 50, HONEST: 50}
    )
    reason = failure(broker, job_id)
    assert f"{HOSTILE}'s synthetic part: the file has 5000 rows; the job asked for 50" in reason


def test_local_part_whose_reported_rows_differ_from_its_share_fails_the_job(
    broker: BrokerProcess,
) -> None:
    job_id = submit(broker, "local")
    send_synthetic(
        broker, job_id, {HOSTILE: people(50), HONEST: people(50)}, {HOSTILE: 5000, HONEST: 50}
    )
    assert f"{HOSTILE}'s synthetic part: it reported 5000 rows" in failure(broker, job_id)


def test_prepared_rows_outside_the_domain_or_with_extra_columns_fail_the_job(
    broker: BrokerProcess,
) -> None:
    job_id = submit(broker, "prepared")
    bad = people(100).assign(sex=["X"] * 3 + ["F"] * 97)
    send_rows(
        broker, job_id, "upload_prepared", {HOSTILE: parquet(bad), HONEST: parquet(people(100))}
    )
    reason = failure(broker, job_id)
    assert f"{HOSTILE}'s prepared rows: column 'sex': 3 value(s) not one of" in reason

    job_id = submit(broker, "prepared")
    leaked = people(100).assign(ssn="123-45-6789")
    send_rows(
        broker, job_id, "upload_prepared", {HOSTILE: parquet(leaked), HONEST: parquet(people(100))}
    )
    reason = failure(broker, job_id)
    assert f"{HOSTILE}'s prepared rows: columns the job does not declare ['ssn']" in reason


def test_raw_parquet_declaring_more_rows_than_the_cap_is_refused_from_its_footer(
    broker: BrokerProcess,
) -> None:
    rows = DEFAULTS.max_supplier_rows + 1
    zeros = pa.array(np.zeros(rows, dtype=np.int32))
    bomb = pa.table(
        {
            "age": pa.DictionaryArray.from_arrays(zeros, pa.array(["42"])),
            "sex": pa.DictionaryArray.from_arrays(zeros, pa.array(["F"])),
        }
    )
    job_id = submit(broker, "central")
    honest = parquet(people(100).astype(str))
    started = time.monotonic()
    send_rows(broker, job_id, "upload_raw", {HOSTILE: parquet(bomb), HONEST: honest})
    reason = failure(broker, job_id)
    assert (
        f"{HOSTILE}'s raw rows: the file declares {rows} rows; at most "
        f"{DEFAULTS.max_supplier_rows} are taken from one supplier (the broker's "
        "limits.max_supplier_rows)" in reason
    )
    assert time.monotonic() - started < 30


def test_raw_parquet_whose_text_expands_past_the_byte_bound_is_refused_before_decoding(
    broker: BrokerProcess,
) -> None:
    rows = DEFAULTS.max_supplier_table_bytes // (64 << 10) + 1
    indices = pa.array(np.zeros(rows, dtype=np.int32))
    bomb = pa.table(
        {
            "age": pa.DictionaryArray.from_arrays(indices, pa.array(["4" * (64 << 10)])),
            "sex": pa.DictionaryArray.from_arrays(indices, pa.array(["F"])),
        }
    )
    job_id = submit(broker, "central")
    send_rows(
        broker,
        job_id,
        "upload_raw",
        {HOSTILE: parquet(bomb), HONEST: parquet(people(100).astype(str))},
    )
    reason = failure(broker, job_id)
    assert (
        f"{HOSTILE}'s raw rows: the rows take more than {DEFAULTS.max_supplier_table_bytes} "
        "bytes decoded (the broker's limits.max_supplier_table_bytes)" in reason
    )


def test_the_operator_sets_how_many_rows_the_broker_takes_from_one_supplier(
    tmp_path: Path,
) -> None:
    with running_broker(tmp_path, max_supplier_rows=150) as capped:
        job_id = submit(capped, "central")
        rows = {HOSTILE: parquet(people(200).astype(str)), HONEST: parquet(people(100).astype(str))}
        send_rows(capped, job_id, "upload_raw", rows)
        reason = failure(capped, job_id)
    assert (
        f"{HOSTILE}'s raw rows: the file declares 200 rows; at most 150 are taken from one "
        "supplier (the broker's limits.max_supplier_rows)" in reason
    )
    assert HONEST not in reason


def test_statistics_counting_more_rows_than_one_supplier_may_send_are_refused(
    tmp_path: Path,
) -> None:
    with running_broker(tmp_path, max_supplier_rows=150) as capped:
        job_id = submit(capped, "federated")
        schema = MODEL_SCHEMA
        statistics = supplier_pb2.UPLOAD_KIND_STATISTICS
        for name, rows in ((HOSTILE, 200), (HONEST, 100)):
            task = next_task(capped, name, job_id, "marginal_stats")
            data = GaussianCopula().stats(people(rows), schema).to_bytes()
            sha = upload(capped, name, task, "marginal-stats.fsa", statistics, data)
            report(capped, name, task, {"uploads": {"marginal-stats.fsa": sha}})
        reason = failure(capped, job_id)
    assert reason.startswith(f"{HOSTILE}'s marginal_stats: column 'age' counts 200 rows")
    assert "statistics count between 1 and 150 rows" in reason


def test_raw_rows_stored_as_integers_fail_the_job_naming_supplier_and_column(
    broker: BrokerProcess,
) -> None:
    job_id = submit(broker, "central")
    send_rows(
        broker,
        job_id,
        "upload_raw",
        {HOSTILE: parquet(people(100)), HONEST: parquet(people(100).astype(str))},
    )
    reason = failure(broker, job_id)
    assert f"{HOSTILE}'s raw rows: columns 'age' (int64) are not text" in reason


def test_raw_rows_uploaded_as_statistics_are_not_consumed(broker: BrokerProcess) -> None:
    """Raw rows sent as statistics would skip encryption at rest and the purge; whether the
    upload service refuses them or they arrive, the job must not use them."""
    job_id = submit(broker, "central")
    for name in SUPPLIERS:
        task = next_task(broker, name, job_id, "upload_raw")
        hostile = name == HOSTILE
        kind = supplier_pb2.UPLOAD_KIND_STATISTICS if hostile else supplier_pb2.UPLOAD_KIND_RAW
        data = parquet(people(100, seed=int(hostile)).astype(str))
        try:
            sha = upload(broker, name, task, "raw.parquet", kind, data)
        except grpc.RpcError as exc:
            assert hostile and exc.code() is grpc.StatusCode.INVALID_ARGUMENT, exc
            sha = hashlib.sha256(data).hexdigest()
        report(broker, name, task, {"uploads": {"raw.parquet": sha}})
    assert f"supplier {HOSTILE!r}" in failure(broker, job_id)


def test_a_step_takes_only_uploads_of_its_own_kind(broker: BrokerProcess) -> None:
    state = BrokerState.open(BrokerConfig.load(broker.config_path))
    try:
        spec = job_spec("kinds")
        job = state.store.create_job(
            name=spec.name,
            topology=spec.topology.value,
            spec_json=spec.canonical_json(),
            spec_sha256=spec.spec_hash,
            submitted_by="spiffe://testfed/operator/ops",
        )
        job = state.store.set_job_state(job.job_id, JobState.CANCELLED, "kept out of the plan")
        data = parquet(people(10).astype(str))
        sha = state.artifacts.put_bytes(data).sha256
        row = UploadRow(
            upload_id="up-kinds",
            supplier=HOSTILE,
            job_id=job.job_id,
            task_id=f"{job.job_id}.0.{HOSTILE}",
            name="raw.parquet",
            kind="UPLOAD_KIND_STATISTICS",
            size=len(data),
            sha256=sha,
            encrypted=False,
            state="complete",
        )
        state.store.create_upload(row)
        ctx = JobContext(state, job, spec, {}, list(SUPPLIERS))
        result = {"uploads": {"raw.parquet": sha}}
        with pytest.raises(StepFailed, match="as UPLOAD_KIND_STATISTICS; this step takes only"):
            ctx.upload(HOSTILE, result, "raw.parquet", supplier_pb2.UPLOAD_KIND_RAW)
        assert ctx.upload(HOSTILE, result, "raw.parquet", STATISTICS) == data
    finally:
        state.close()


def fetch(broker: BrokerProcess, name: str, sha256: str) -> bytes:
    request = supplier_pb2.FetchArtifactRequest(supplier=name, sha256=sha256)
    stream = supplier_stub(broker, name).FetchArtifact(request, timeout=30)
    return b"".join(m.chunk.data for m in stream if m.HasField("chunk"))


def test_candidate_altered_on_disk_after_the_audit_is_not_released(
    broker: BrokerProcess,
) -> None:
    job_id = submit(broker, "federated")
    schema = MODEL_SCHEMA
    real = {name: people(200, seed=i) for i, name in enumerate(SUPPLIERS)}
    statistics = supplier_pb2.UPLOAD_KIND_STATISTICS
    for name, frame in real.items():
        task = next_task(broker, name, job_id, "marginal_stats")
        data = GaussianCopula().stats(frame, schema).to_bytes()
        sha = upload(broker, name, task, "marginal-stats.fsa", statistics, data)
        report(broker, name, task, {"uploads": {"marginal-stats.fsa": sha}})
    for name, frame in real.items():
        task = next_task(broker, name, job_id, "dependence_stats")
        model = GaussianCopula()
        model.fit_marginals(SufficientStats.from_bytes(fetch(broker, name, task.artifacts[0])))
        data = model.dependence_stats(frame).to_bytes()
        sha = upload(broker, name, task, "dependence-stats.fsa", statistics, data)
        report(broker, name, task, {"uploads": {"dependence-stats.fsa": sha}})
    tasks = {name: next_task(broker, name, job_id, "audit_candidate") for name in SUPPLIERS}
    candidate = tasks[HOSTILE].artifacts[0]
    stored = next(p for p in broker.state_dir.rglob(candidate) if p.is_file())
    stored.chmod(0o600)
    stored.write_bytes(parquet(pd.DataFrame({"age": [77] * 10, "sex": ["M"] * 10})))
    for name, task in tasks.items():
        report(broker, name, task, {"verdict": verdict(broker, name, task, candidate)})
    reason = failure(broker, job_id)
    assert f"the audited candidate {candidate} was altered on the broker's disk" in reason


def test_raw_rows_with_source_columns_the_schema_leaves_out_are_prepared(
    broker: BrokerProcess,
) -> None:
    """A site sends its source as it is (the demo's hospital_b has a discharge date it derives
    a stay from): columns outside the schema are left to preparation, not refused."""
    job_id = submit(broker, "central")
    rows = {
        name: parquet(people(100, seed=i).astype(str).assign(discharge="2024-01-02"))
        for i, name in enumerate(SUPPLIERS)
    }
    send_rows(broker, job_id, "upload_raw", rows)
    job = ended_job(broker, job_id)
    assert "raw rows" not in job.reason and "discharge" not in job.reason, job.reason
