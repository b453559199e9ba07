"""Supplier verdicts bind to their signer, the job and the released dataset, at the broker and at
the consumer: a verdict signed by another supplier or with a revoked certificate, or naming
another dataset than the one released, rejects the candidate and no consumer accepts it."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from broker.releases import Published, ReleaseRefused, publish
from broker.state import BrokerState
from broker.steps import parquet_bytes
from consumer_client import Client, ReleaseVerificationError
from fedsynth.jobs import JobSpec
from fedsynth.operator.client import OperatorClient
from fedsynth.security.attestation import VERDICT_FORMAT, SignedDocument, sign_document
from fedsynth.security.certificates import load_cert, load_key
from fedsynth.security.principals import Role
from fedsynth.wire.v1 import operator_pb2, operator_pb2_grpc, supplier_pb2
from tests.wire.broker_harness import (
    SUPPLIERS,
    BrokerProcess,
    ended_job,
    job_spec,
    next_task,
    submit_job,
    supplier_stub,
)

FRAME = pd.DataFrame({"age": [34, 51, 29, 77], "sex": ["F", "M", "F", "M"]})


@pytest.fixture(scope="module")
def job_id(broker: BrokerProcess) -> str:
    return submit_job(broker, "binding-direct")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signed_verdict(
    signer: tuple[Path, Path],
    supplier: str,
    job_id: str,
    dataset_sha256: str,
    failed: tuple[str, ...] = (),
) -> SignedDocument:
    """`supplier`'s verdict on `dataset_sha256` (a pass unless checks `failed`), signed with the
    `signer` files."""
    document = {
        "format": VERDICT_FORMAT,
        "supplier": supplier,
        "job_id": job_id,
        "task_id": "task-x",
        "verdict": "fail" if failed else "pass",
        "dataset_sha256": dataset_sha256,
        "report_sha256": "b" * 64,
        "failed_checks": list(failed),
        "scores": {},
    }
    cert, key = signer
    return sign_document(document, load_key(key), load_cert(cert))


def own_verdict(broker: BrokerProcess, supplier: str, job_id: str, sha: str) -> SignedDocument:
    return signed_verdict(broker.pki.paths_for(Role.SUPPLIER, supplier), supplier, job_id, sha)


def upload_part(broker: BrokerProcess, name: str, task: supplier_pb2.Task) -> tuple[str, int]:
    """Upload `name`'s synthetic part of the asked size; its SHA-256 and row count."""
    rows = int(json.loads(task.payload_json)["rows"])
    data = parquet_bytes(pd.DataFrame({"age": [40] * rows, "sex": ["F"] * rows}))
    stub = supplier_stub(broker, name)
    header = stub.BeginUpload(
        supplier_pb2.UploadHeader(
            supplier=name,
            job_id=task.job_id,
            task_id=task.task_id,
            name="synthetic.parquet",
            kind=supplier_pb2.UPLOAD_KIND_SYNTHETIC,
            size=len(data),
            sha256=sha256(data),
        ),
        timeout=20,
    )
    chunk = supplier_pb2.UploadChunk(upload_id=header.upload_id, offset=0, data=data)
    assert stub.Upload(iter([chunk]), timeout=20).complete
    return sha256(data), rows


def run_local_job(
    broker: BrokerProcess, name: str, sign: Callable[[str, str, str], SignedDocument]
) -> tuple[str, operator_pb2.JobStatus]:
    """A `local` job whose sites upload their parts and report `sign(supplier, job, sha)`."""
    spec = JobSpec.model_validate(
        {**json.loads(job_spec(name).canonical_json()), "topology": "local"}
    )
    ops = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
    job_id = ops.SubmitJob(
        operator_pb2.SubmitJobRequest(spec_json=spec.canonical_json()), timeout=20
    ).job_id
    for supplier in SUPPLIERS:
        task = next_task(broker, supplier, job_id, "synthesize_locally")
        sha, rows = upload_part(broker, supplier, task)
        result = {
            "uploads": {"synthetic.parquet": sha},
            "rows": rows,
            "verdict": sign(supplier, job_id, sha).to_json(),
        }
        supplier_stub(broker, supplier).ReportResult(
            supplier_pb2.TaskResult(
                supplier=supplier,
                task_id=task.task_id,
                ok=True,
                result_json=json.dumps(result).encode(),
            ),
            timeout=20,
        )
    return job_id, ended_job(broker, job_id, timeout_s=60)


def rejected_reasons(broker: BrokerProcess, job_id: str) -> list[str]:
    """The reasons of the job's rejected candidates, as operators see them; none released."""
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        candidates = ops.candidates(job_id)
    assert candidates and all(c.release_id == "" for c in candidates)
    return [r for c in candidates for r in c.reasons]


def released_jobs(broker: BrokerProcess) -> set[str]:
    with Client(broker.address, **broker.identity(Role.CONSUMER, "alice")) as client:
        return {r.job_id for r in client.list()}


def test_a_verdict_signed_with_another_suppliers_key_rejects_the_candidate(
    broker: BrokerProcess,
) -> None:
    def sign(supplier: str, job_id: str, sha: str) -> SignedDocument:
        signer = "hospital-b" if supplier == "hospital-a" else supplier
        return signed_verdict(broker.pki.paths_for(Role.SUPPLIER, signer), supplier, job_id, sha)

    job_id, status = run_local_job(broker, "binding-other-key", sign)
    assert status.state == "failed"
    assert any(
        "'hospital-a' is signed by spiffe://testfed/supplier/hospital-b" in r
        for r in rejected_reasons(broker, job_id)
    )
    assert job_id not in released_jobs(broker)


def test_a_failing_site_verdict_names_its_checks_in_plain_words(broker: BrokerProcess) -> None:
    """The reason read `audit failed: ['utility.primary_ratio']`, a Python list with no hint of
    where the values are."""

    def sign(supplier: str, job_id: str, sha: str) -> SignedDocument:
        failed = ("utility.primary_ratio", "fidelity.overall") if supplier == "hospital-a" else ()
        return signed_verdict(
            broker.pki.paths_for(Role.SUPPLIER, supplier), supplier, job_id, sha, failed
        )

    job_id, status = run_local_job(broker, "binding-failed-checks", sign)
    assert status.state == "failed"
    (reason,) = [r for r in rejected_reasons(broker, job_id) if "audit failed" in r]
    assert reason.startswith(
        "supplier 'hospital-a' audit failed (utility.primary_ratio, fidelity.overall); the "
        "values and thresholds are in that site's audit report"
    )
    assert "[" not in reason


def test_a_verdict_signed_with_a_revoked_certificate_rejects_the_candidate(
    broker: BrokerProcess,
) -> None:
    def sign(supplier: str, job_id: str, sha: str) -> SignedDocument:
        verdict = own_verdict(broker, supplier, job_id, sha)
        if supplier == "hospital-b":  # its key leaks: the CA revokes it and issues a new one
            broker.pki.issue(Role.SUPPLIER, supplier, replace=True)
        return verdict

    job_id, status = run_local_job(broker, "binding-revoked", sign)
    assert status.state == "failed"
    assert any("is revoked" in r and "hospital-b" in r for r in rejected_reasons(broker, job_id))
    assert job_id not in released_jobs(broker)


def publish_candidate(
    state: BrokerState,
    job_id: str,
    dataset: bytes,
    verdicts: list[SignedDocument],
    topology: str = "federated",
    audited_sha256: str | None = None,
) -> Published:
    return publish(
        state,
        job_id=job_id,
        name="binding",
        dataset=dataset,
        audit_report_json=b'{"verdict": "pass"}',
        audit_html=b"<html><body>audit</body></html>",
        job_spec_hash=job_spec("binding-direct").spec_hash,
        topology=topology,
        synthesizer="copula",
        privacy_spent=None,
        supplier_verdicts=verdicts,
        audited_sha256=audited_sha256,
    )


def test_verdicts_naming_another_dataset_than_the_candidate_reject_it(
    broker: BrokerProcess, state: BrokerState, job_id: str
) -> None:
    audited, swapped = parquet_bytes(FRAME), parquet_bytes(FRAME.head(1))
    verdicts = [own_verdict(broker, s, job_id, sha256(audited)) for s in SUPPLIERS]
    with pytest.raises(ReleaseRefused) as refused:
        publish_candidate(state, job_id, swapped, verdicts)
    expected = (
        f"names dataset {sha256(audited)}, but the dataset it must cover is {sha256(swapped)}"
    )
    assert any(expected in r and "'hospital-a'" in r for r in refused.value.reasons)
    assert job_id not in released_jobs(broker)


def test_a_broker_audit_of_another_dataset_than_the_candidate_rejects_it(
    broker: BrokerProcess, state: BrokerState, job_id: str
) -> None:
    audited, swapped = parquet_bytes(FRAME.head(2)), parquet_bytes(FRAME.head(3))
    with pytest.raises(ReleaseRefused, match=f"audited dataset {sha256(audited)}"):
        publish_candidate(state, job_id, swapped, [], "central", audited_sha256=sha256(audited))
    assert job_id not in released_jobs(broker)


def resign_attestation(
    broker: BrokerProcess, release_id: str, alter: Callable[[dict[str, Any]], None]
) -> None:
    """Rewrite a stored attestation with `alter` and sign it with the broker's own key, as a
    broker that skipped its checks would have."""
    db_path = broker.state_dir / "broker.sqlite3"
    with sqlite3.connect(db_path) as db:
        (payload,) = db.execute(
            "SELECT attestation_json FROM releases WHERE release_id = ?", (release_id,)
        ).fetchone()
        attestation = json.loads(payload)
        alter(attestation)
        cert, key = broker.pki.paths_for(Role.BROKER, "broker")
        signed = sign_document(attestation, load_key(key), load_cert(cert))
        db.execute(
            "UPDATE releases SET attestation_json = ?, signature = ? WHERE release_id = ?",
            (signed.payload, signed.signature, release_id),
        )


def first_verdict(verdict: SignedDocument) -> Callable[[dict[str, Any]], None]:
    """An alteration replacing the attestation's first supplier verdict with `verdict`."""
    return lambda attestation: attestation["supplier_verdicts"].__setitem__(0, verdict.to_json())


def alteration(broker: BrokerProcess, case: str, job_id: str, released: str) -> Any:
    """The attestation change that `case` names, for a release of `released` in `job_id`."""
    if case == "broker-audit-of-another-dataset":
        return lambda attestation: attestation["audit_report"].update(dataset_sha256="d" * 64)
    if case == "verdict-of-another-dataset":
        return first_verdict(own_verdict(broker, "hospital-a", job_id, "c" * 64))
    if case == "verdict-of-another-job":
        return first_verdict(own_verdict(broker, "hospital-a", "job-other", released))
    other_key = broker.pki.paths_for(Role.SUPPLIER, "hospital-b")
    return first_verdict(signed_verdict(other_key, "hospital-a", job_id, released))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("verdict-of-another-dataset", "supplier 'hospital-a''s verdict names dataset " + "c" * 64),
        ("verdict-by-another-supplier", "'hospital-a' is signed by spiffe://testfed/supplier/"),
        ("verdict-of-another-job", "verdict is for job 'job-other'"),
        ("broker-audit-of-another-dataset", "the broker's audit names dataset " + "d" * 64),
    ],
)
def test_the_consumer_refuses_a_signed_attestation_whose_verdicts_do_not_bind(
    broker: BrokerProcess,
    state: BrokerState,
    job_id: str,
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    data = parquet_bytes(FRAME)
    verdicts = [own_verdict(broker, s, job_id, sha256(data)) for s in SUPPLIERS]
    published = publish_candidate(state, job_id, data, verdicts)
    out = tmp_path / "release.parquet"
    with Client(broker.address, **broker.identity(Role.CONSUMER, "alice")) as client:
        client.pull_to(published.release_id, out)  # as the broker signed it, it verifies
        out.unlink()
        resign_attestation(
            broker, published.release_id, alteration(broker, case, job_id, sha256(data))
        )
        with pytest.raises(ReleaseVerificationError, match=re.escape(expected)):
            client.pull_to(published.release_id, out)
    assert not out.exists()
