"""A site audits at most a few candidates per job and per day: each verdict tells the broker
something about the site's rows, so a compromised broker cannot use audits as an oracle. In a
DP job a verdict says no more than pass or fail: it names no failed check and carries no score,
both exact answers about the site's rows outside the job's budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fedsynth.jobs import JobSpec
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from supplier_agent.audit_quota import AuditQuota
from supplier_agent.config import AgentConfig
from supplier_agent.outgoing import TaskRefused
from supplier_agent.tasks import TaskContext, TaskPayload, audit_candidate

SCHEMA = {
    "name": "patients",
    "columns": [
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
        {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
    ],
}


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    ca = FederationCA.init(tmp_path / "pki", "testfed")
    ca.issue(Role.SUPPLIER, "hospital-a")
    cert, key = ca.paths_for(Role.SUPPLIER, "hospital-a")
    rows = pd.DataFrame({"age": [20 + i % 60 for i in range(200)], "sex": ["F", "M"] * 100})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "agent.yaml").write_text(
        f"name: hospital-a\nbroker: 127.0.0.1:7443\n"
        f"tls: {{ca: {ca.directory / 'ca.pem'}, cert: {cert}, key: {key}}}\nstate_dir: state\n"
        "egress: {max_audits_per_job: 2, max_audits_per_day: 3}\n"
        "sources:\n  patients: {kind: file, path: rows.csv}\n"
    )
    return AgentConfig.load(tmp_path / "agent.yaml")


def audit_task(config: AgentConfig, tmp_path: Path, job_id: str, task_id: str) -> TaskContext:
    job = JobSpec.model_validate(
        {
            "name": "j",
            "topology": "central",
            "suppliers": [{"supplier": "hospital-a", "source": "patients"}],
            "schema": SCHEMA,
            "synthesizer": {"name": "copula"},
            "rows": 50,
        }
    )
    candidate = tmp_path / "candidate.parquet"
    pd.DataFrame({"age": [66] * 50, "sex": ["M"] * 50}).to_parquet(candidate)

    def fetch(sha256: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(candidate, path))

    payload = TaskPayload(job=job, rows=0, inputs={"candidate": "ab" * 32})
    return TaskContext(config, job_id, task_id, payload, tmp_path / "work" / task_id, fetch)


def test_a_job_past_its_audits_is_refused_before_the_rows_are_read(
    config: AgentConfig, tmp_path: Path
) -> None:
    for task in ("job-1.3.a", "job-1.5.a"):
        assert "verdict" in audit_candidate(audit_task(config, tmp_path, "job-1", task)).result
    with pytest.raises(TaskRefused, match=r"already audited 2 candidate\(s\) of job 'job-1'"):
        audit_candidate(audit_task(config, tmp_path, "job-1", "job-1.7.a"))
    assert not (config.state_dir / "reports" / "job-1.7.a").exists()


def test_an_audit_rerun_after_a_restart_is_not_counted_again(
    config: AgentConfig, tmp_path: Path
) -> None:
    for _ in range(3):
        audit_candidate(audit_task(config, tmp_path, "job-1", "job-1.3.a"))
    audit_candidate(audit_task(config, tmp_path, "job-1", "job-1.5.a"))


def test_audits_over_the_daily_limit_are_refused_across_jobs(
    config: AgentConfig, tmp_path: Path
) -> None:
    for job in ("job-1", "job-2", "job-3"):
        audit_candidate(audit_task(config, tmp_path, job, f"{job}.3.a"))
    with pytest.raises(TaskRefused, match=r"audited 3 candidates in the last 24 hours"):
        audit_candidate(audit_task(config, tmp_path, "job-4", "job-4.3.a"))


def test_the_count_survives_a_new_quota_object(tmp_path: Path) -> None:
    AuditQuota(tmp_path / "q.sqlite3", per_job=1, per_day=5).admit("t1", "job-1", "ab" * 32)
    with pytest.raises(RuntimeError, match="limit per job"):
        AuditQuota(tmp_path / "q.sqlite3", per_job=1, per_day=5).admit("t2", "job-1", "cd" * 32)


def signed_verdict(config: AgentConfig, tmp_path: Path, dp: bool) -> dict[str, Any]:
    """What the site signs for a candidate of one repeated row, which fails its audit."""
    context = audit_task(config, tmp_path, "job-1", "job-1.3.a")
    if dp:
        data = context.payload.job.model_dump(mode="json", by_alias=True)
        data |= {"topology": "federated", "synthesizer": {"name": "dp-marginal"}}
        data["privacy"] = {"epsilon": 1.0, "delta": 1e-6}
        context.payload.job = JobSpec.model_validate(data)
    return json.loads(audit_candidate(context).result["verdict"]["payload"])


@pytest.mark.parametrize("dp", [False, True], ids=["plain", "dp"])
def test_a_failed_verdict_names_its_checks_and_scores_only_without_dp(
    config: AgentConfig, tmp_path: Path, dp: bool
) -> None:
    document = signed_verdict(config, tmp_path, dp)
    assert document["verdict"] == "fail"
    if dp:
        assert document["failed_checks"] == [] and document["scores"] == {}
    else:
        assert document["failed_checks"] and document["scores"]
