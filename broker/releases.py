"""Publishing: a candidate dataset becomes a release only when every audit verdict passed.

A release is the dataset, its audit report (JSON and HTML) and an attestation signed by the
broker's key: dataset hash, job spec hash, topology, synthesizer, privacy spent and the audit
verdicts, including suppliers' signed ones. Rejected candidates are kept, with their reasons,
for operators, and are never served to consumers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from broker.state import BrokerState
from broker.store import ReleaseRow, new_id, now_iso
from fedsynth.plans import ChargeReport
from fedsynth.privacy.accountant import compose
from fedsynth.security.attestation import (
    MERGING_TOPOLOGIES,
    AttestationError,
    SignedDocument,
    sign_document,
    verify_supplier_verdict,
)
from fedsynth.security.ca import load_revoked_serials
from fedsynth.security.certificates import cert_pem, load_cert

ATTESTATION_FORMAT = "fedsynth.attestation/v1"
PARQUET = "application/vnd.apache.parquet"


class ReleaseRefused(Exception):
    """The candidate did not pass; it was recorded as rejected with `reasons`."""

    def __init__(self, candidate_id: str, reasons: list[str]) -> None:
        super().__init__(f"candidate {candidate_id} rejected: " + "; ".join(reasons))
        self.candidate_id = candidate_id
        self.reasons = reasons


@dataclass(frozen=True)
class Published:
    release_id: str
    candidate_id: str
    attestation: dict[str, Any]


def _report_verdict(audit_report_json: bytes) -> tuple[str, list[str]]:
    """The report's top-level verdict and, when it is not a pass, the reasons it gives."""
    try:
        report = json.loads(audit_report_json)
    except ValueError as exc:
        return "invalid", [f"audit report is not JSON: {exc}"]
    if not isinstance(report, dict) or report.get("verdict") not in {"pass", "fail"}:
        return "invalid", ["audit report has no top-level verdict 'pass' or 'fail'"]
    verdict = report["verdict"]
    if verdict == "pass":
        return verdict, []
    given = report.get("reasons")
    reasons = [str(r) for r in given] if isinstance(given, list) and given else []
    return verdict, reasons or ["the audit verdict is 'fail'"]


def _revoked_serials(state: BrokerState, ca_cert: x509.Certificate) -> frozenset[int]:
    """Serials on the federation CRL the broker is configured with (none configured: none)."""
    crl = state.config.tls.crl
    return frozenset() if crl is None else load_revoked_serials(crl, ca_cert)


def _supplier_reasons(
    state: BrokerState,
    verdicts: list[SignedDocument],
    *,
    job_id: str,
    job_spec_hash: str,
    dataset_sha256: str,
    topology: str,
) -> tuple[list[dict[str, str]], dict[str, str], list[str]]:
    """Verify each supplier verdict and bind it to this job and dataset.

    Returns the signed verdicts for the attestation, each supplier's audited part where the
    topology merges parts, and the reasons to reject the candidate. A verdict counts only when
    signed by the supplier it speaks for, with a certificate not revoked and valid now (so at
    signing, which came before), naming this job and the dataset it must cover.
    """
    if not verdicts:
        return [], {}, []
    ca_cert = load_cert(state.config.tls.ca)
    try:
        revoked = _revoked_serials(state, ca_cert)
    except (OSError, ValueError) as exc:
        return [], {}, [f"supplier verdicts cannot be checked against the revocation list: {exc}"]
    merging = topology in MERGING_TOPOLOGIES
    uploaded = {
        (u.supplier, u.sha256)
        for u in state.store.uploads_of_job(job_id)
        if merging and u.state == "complete"
    }
    reasons: list[str] = []
    parts: dict[str, str] = {}
    seen: set[str] = set()
    for index, signed in enumerate(verdicts, 1):
        try:
            verdict = verify_supplier_verdict(
                signed, ca_cert, state.config.federation, revoked=revoked
            )
        except AttestationError as exc:
            reasons.append(f"supplier verdict {index} does not verify: {exc}")
            continue
        if verdict.supplier in seen:
            reasons.append(f"supplier {verdict.supplier!r} sent more than one verdict")
        seen.add(verdict.supplier)
        covers = dataset_sha256
        if merging:
            covers = parts[verdict.supplier] = verdict.dataset_sha256
            if (verdict.supplier, covers) not in uploaded:
                reasons.append(
                    f"supplier {verdict.supplier!r}'s verdict names dataset {covers}, which is "
                    f"not an output it uploaded for job {job_id}"
                )
        reasons += verdict.binding_problems(
            job_id=job_id, job_spec_sha256=job_spec_hash, dataset_sha256=covers
        )
        if verdict.verdict != "pass":
            reasons.append(f"supplier {verdict.supplier!r} verdict is {verdict.verdict!r}")
    return [v.to_json() for v in verdicts], parts, reasons


def charges_spent(charges: Mapping[str, Sequence[ChargeReport]], delta: float) -> dict[str, Any]:
    """The attestation's privacy section from the suppliers' charges for one job, at `delta`.

    Each supplier's charges compose (RDP curves add), as its ledger composes them; the release
    as a whole spent what the most-charged supplier spent, since each person's rows sit at one
    supplier. A malformed reported cost fails the release rather than understating the spend.
    """
    suppliers = {}
    for name, items in sorted(charges.items()):
        total = compose(c.cost() for c in items)
        suppliers[name] = {
            "epsilon": total.epsilon_at(delta),
            "delta": delta,
            "releases": [{"release_id": c.release_id, "source": c.source} for c in items],
        }
    return {
        "epsilon": max((s["epsilon"] for s in suppliers.values()), default=0.0),
        "delta": delta,
        "suppliers": suppliers,
    }


def publish(
    state: BrokerState,
    *,
    job_id: str,
    name: str,
    dataset: bytes | Path,
    audit_report_json: bytes,
    audit_html: bytes,
    job_spec_hash: str,
    topology: str,
    synthesizer: str,
    privacy_spent: dict[str, Any] | None,
    supplier_verdicts: Sequence[SignedDocument] = (),
    audited_sha256: str | None = None,
    schema: dict[str, Any] | None = None,
) -> Published:
    """Record a candidate and release it when every verdict passed; raise ReleaseRefused if not.

    `dataset` is Parquet bytes or a path to a Parquet file (streamed, for large outputs).
    `privacy_spent` is the (epsilon, delta) the release spent, None for a job without DP.
    Every supplier verdict must cover `dataset` (in `local`, the supplier's own uploaded part),
    and so must the broker's own audit: `audited_sha256` names the candidate it audited.
    `schema` (the released table's, as `TableSchema.to_dict` gives it) is attested with the
    dataset, so a consumer reads its columns' kinds, bounds and descriptions from a signed
    document.
    """
    store, artifacts = state.store, state.artifacts
    data = (
        artifacts.put_file(dataset) if isinstance(dataset, Path) else artifacts.put_bytes(dataset)
    )
    report = artifacts.put_bytes(audit_report_json)
    html = artifacts.put_bytes(audit_html)
    verdict, reasons = _report_verdict(audit_report_json)
    if audited_sha256 is not None and audited_sha256 != data.sha256:
        reasons.append(
            f"the broker audited dataset {audited_sha256}, but the dataset to release is "
            f"{data.sha256}"
        )
    signed_verdicts, parts, supplier_reasons = _supplier_reasons(
        state,
        list(supplier_verdicts),
        job_id=job_id,
        job_spec_hash=job_spec_hash,
        dataset_sha256=data.sha256,
        topology=topology,
    )
    reasons += supplier_reasons

    def add_candidate() -> str:
        return store.add_candidate(
            job_id=job_id,
            verdict="pass" if not reasons else "fail",
            reasons=reasons,
            dataset_sha256=data.sha256,
            dataset_size=data.size,
            report_sha256=report.sha256,
            html_sha256=html.sha256,
        )

    broker_uri = state.config.uri
    if reasons:
        with state.db.transaction() as conn:
            candidate_id = add_candidate()
            state.audit.append_within(
                conn,
                broker_uri,
                "candidate.rejected",
                candidate_id,
                job_id=job_id,
                reasons=reasons,
                dataset_sha256=data.sha256,
            )
        state.audit.sync_head()
        raise ReleaseRefused(candidate_id, reasons)
    release_id = new_id("rel")
    issued_at = now_iso()
    attestation = {
        "format": ATTESTATION_FORMAT,
        "release_id": release_id,
        "job_id": job_id,
        "name": name,
        "dataset": {
            "sha256": data.sha256,
            "size": data.size,
            "media_type": PARQUET,
            **({"parts": parts} if topology in MERGING_TOPOLOGIES else {}),
        },
        "audit_report": {
            "sha256": report.sha256,
            "verdict": verdict,
            "dataset_sha256": data.sha256,
        },
        "audit_html": {"sha256": html.sha256},
        **({"schema": schema} if schema is not None else {}),
        "job_spec_sha256": job_spec_hash,
        "topology": topology,
        "synthesizer": synthesizer,
        "privacy_spent": privacy_spent,
        "supplier_verdicts": signed_verdicts,
        "broker": broker_uri,
        "issued_at": issued_at,
    }
    identity = state.signing_identity()
    signed = sign_document(attestation, identity.key, identity.cert)
    with state.db.transaction() as conn:
        candidate_id = add_candidate()
        store.add_release(
            ReleaseRow(
                release_id=release_id,
                candidate_id=candidate_id,
                job_id=job_id,
                name=name,
                dataset_sha256=data.sha256,
                dataset_size=data.size,
                report_sha256=report.sha256,
                html_sha256=html.sha256,
                topology=topology,
                synthesizer=synthesizer,
                attestation_json=signed.payload,
                signature=signed.signature,
                broker_certificate_pem=cert_pem(identity.cert),
                created_at=issued_at,
            )
        )
        state.audit.append_within(
            conn,
            broker_uri,
            "release.published",
            release_id,
            job_id=job_id,
            candidate_id=candidate_id,
            dataset_sha256=data.sha256,
        )
    state.audit.sync_head()
    return Published(release_id, candidate_id, attestation)
