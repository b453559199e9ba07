"""The `central` and `prepared` topologies, and the sites' egress policies: rows reach the broker
only where a site allows it; a site allowing only statistics makes a central job fail with a
reason naming it, and not one of its rows is on the broker's store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from broker.steps import SUMMARY_SCORES
from consumer_client import Client
from fedsynth.audit import AuditReport
from fedsynth.jobs import JobSpec, JobSpecError
from fedsynth.security.principals import Role
from tests.federation.harness import SCHEMA, STRICT, SUPPLIERS, Federation, job


def uploads(fed: Federation, job_id: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(fed.broker.state_dir / "broker.sqlite3") as db:
        return list(
            db.execute("SELECT supplier, kind, state FROM uploads WHERE job_id = ?", (job_id,))
        )


def audit_actions(fed: Federation, job_id: str) -> list[str]:
    with sqlite3.connect(fed.broker.state_dir / "broker.sqlite3") as db:
        rows = db.execute("SELECT action FROM audit_log WHERE subject = ?", (job_id,))
        return [action for (action,) in rows]


def test_a_site_allowing_only_statistics_fails_a_central_job_and_sends_no_row(
    federation: Federation,
) -> None:
    job_id = federation.submit(job("central-refused", "central", (*SUPPLIERS[:2], STRICT)))
    finished = federation.wait(job_id)
    assert finished.state == "failed"
    assert STRICT in finished.reason and "'raw'" in finished.reason
    assert not [u for u in uploads(federation, job_id) if u[0] == STRICT]
    assert all(state == "purged" for _, _, state in uploads(federation, job_id))


def test_central_job_releases_an_audited_dataset_and_deletes_the_raw_rows(
    federation: Federation,
) -> None:
    # A twin job running at the same time uploads the very same raw rows (one stored object):
    # whichever ends first must not delete the rows the other still needs.
    job_id, twin = (federation.submit(job(n, "central")) for n in ("central-release", "twin"))
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    assert federation.wait(twin).state == "succeeded"
    with Client(
        federation.broker.address, **federation.broker.identity(Role.CONSUMER, "alice")
    ) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        manifest = client.show(release.release_id)
        assert len(client.pull(release.release_id)) == 240
    assert manifest.audit_report["verdict"] == "pass"
    sent = uploads(federation, job_id)
    assert {kind for _, kind, _ in sent} == {"UPLOAD_KIND_RAW"} and len(sent) == 3
    assert {state for _, _, state in sent} == {"purged"}
    assert "rows.purged" in audit_actions(federation, job_id)
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        stored = {s for (s,) in db.execute("SELECT sha256 FROM uploads WHERE job_id = ?", (twin,))}
    artifacts = federation.broker.state_dir / "artifacts" / "sha256"
    assert stored and not [s for s in stored if (artifacts / s[:2] / f"{s}.enc").exists()]
    for name in SUPPLIERS:
        outbox = federation.agents[name].config_path.parent / "state" / "outbox"
        assert not list(outbox.rglob("*.parquet")), f"{name} kept a copy of its raw rows"


def test_prepared_job_stacks_prepared_rows_and_releases(federation: Federation) -> None:
    job_id = federation.submit(job("prepared-release", "prepared"))
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    sent = uploads(federation, job_id)
    assert {kind for _, kind, _ in sent} == {"UPLOAD_KIND_PREPARED"} and len(sent) == 3
    assert {state for _, _, state in sent} == {"purged"}


def test_prepared_job_links_sources_split_by_column_on_tokens_made_at_the_sites(
    federation: Federation,
) -> None:
    linkage = {"fields": [{"column": "patient_id", "exact": True}], "exact_key": ["patient_id"]}
    schema = {
        **SCHEMA,
        "columns": [{"name": "patient_id", "kind": "identifier"}, *SCHEMA["columns"]],
    }
    north, south = SUPPLIERS[:2]
    spec = job("linked", "prepared", (north, south)).model_dump(mode="json", by_alias=True)
    spec |= {
        "schema": schema,
        "suppliers": [
            {"supplier": north, "source": "linked", "columns": ["patient_id", "age", "sex"]},
            {"supplier": south, "source": "linked", "columns": ["patient_id", "bmi", "smoker"]},
        ],
        "prep": {s: {"source": "linked", "linkage": linkage} for s in (north, south)},
    }
    job_id = federation.submit(JobSpec.model_validate(spec))
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        (result,) = db.execute(
            "SELECT result_json FROM job_steps WHERE job_id = ? AND name = 'synthesize_centrally'",
            (job_id,),
        ).fetchone()
    assert json.loads(result)["linked_rows"] == 260
    with Client(
        federation.broker.address, **federation.broker.identity(Role.CONSUMER, "alice")
    ) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        frame = client.pull(release.release_id)
    assert list(frame.columns) == ["age", "bmi", "sex", "smoker"]
    secret = (federation.broker.root / "linkage.key").read_bytes()
    assert secret not in (federation.broker.state_dir / "broker.sqlite3").read_bytes()
    assert "linkage" not in federation.broker.config_path.read_text()


def test_split_columns_outside_the_prepared_topology_are_refused() -> None:
    data = job("split", "central").model_dump(mode="json", by_alias=True)
    data["suppliers"][0]["columns"] = ["age"]
    with pytest.raises(JobSpecError, match="use topology 'prepared'"):
        JobSpec.from_json(json.dumps(data))


@pytest.mark.parametrize("private", [False, True], ids=["plain", "dp"])
def test_a_central_release_shows_consumers_the_audit_summary_and_nothing_of_the_real_rows(
    federation: Federation, tmp_path: Path, private: bool
) -> None:
    """The broker's own audit describes the pooled real rows (their ranges, histograms and
    correlations, none of it noised): consumers get its verdict, failed checks and, without DP,
    its headline scores; a DP release carries no score computed on the real rows."""
    spec = job(f"central-summary-{private}", "central", SUPPLIERS[:2])
    if private:
        data = spec.model_dump(mode="json", by_alias=True)
        data["synthesizer"] = {"name": "dp-marginal"}
        data["privacy"] = {"epsilon": 1.0, "delta": 1e-6}
        spec = JobSpec.model_validate(data)
    job_id = federation.submit(spec)
    assert federation.wait(job_id).state == "succeeded"
    with Client(
        federation.broker.address, **federation.broker.identity(Role.CONSUMER, "alice")
    ) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        manifest = client.audit_html_to(release.release_id, tmp_path / "audit.html")
    broker_audit = manifest.audit_report["broker_audit"]
    assert manifest.audit_report == {"verdict": "pass", "broker_audit": broker_audit}
    assert broker_audit["verdict"] == "pass" and broker_audit["failed_checks"] == []
    if private:
        assert "scores" not in broker_audit
    else:
        assert set(broker_audit["scores"]) == set(SUMMARY_SCORES)
    page = (tmp_path / "audit.html").read_text()
    assert "the broker audited the candidate against the pooled rows" in page
    assert "<svg" not in page and "data:image" not in page


def test_the_operator_reads_the_brokers_full_audit_on_its_host_and_a_local_job_has_none(
    federation: Federation, tmp_path: Path
) -> None:
    central = federation.submit(job("central-full-audit", "central", SUPPLIERS[:2]))
    local = federation.submit(job("local-no-broker-audit", "local", SUPPLIERS[:2]))
    assert federation.wait(central).state == "succeeded"
    assert federation.wait(local).state == "succeeded"
    written = federation.broker.run_cli("audit-report", central, "--out", str(tmp_path))
    assert written.returncode == 0, written.stderr
    report = AuditReport.from_json((tmp_path / "report.json").read_bytes())
    assert report.verdict == "pass" and report.fidelity.columns[0].real_range is not None
    assert "data:image" in (tmp_path / "report.html").read_text()
    refused = federation.broker.run_cli("audit-report", local, "--out", str(tmp_path / "none"))
    assert refused.returncode == 2 and "audited at each site" in refused.stderr
    assert not (tmp_path / "none").exists()
