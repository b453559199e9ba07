"""A local DP fit, run by the real agent: the job's whole budget is charged before the fit, so a
fit whose output fails the site's own audit is paid for, and that refusal names no check (which
checks failed is one more unnoised answer about the site's rows)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fedsynth.audit.report import AuditReport
from fedsynth.wire.v1 import supplier_pb2
from supplier_agent.config import AgentConfig
from supplier_agent.dp_tasks import LEDGER_FILE
from tests.agent.test_agent_hostile_tasks import PLAIN, HostileBroker, run
from tests.federation.harness import LENIENT_POLICY, LENIENT_THRESHOLDS

EPSILON, DELTA = 1.0, 1e-6
UNREACHABLE = {**LENIENT_POLICY, "min_column_shapes": 1.0}
"""A job's audit bar no synthetic table meets: every column's distribution exactly the real one."""


def site_config(root: Path) -> AgentConfig:
    """A site under `root` with 200 rows, a privacy cap, and the tests' lenient audit bar."""
    rng = np.random.default_rng(3)
    (root / "data").mkdir(parents=True)
    pd.DataFrame({"age": rng.integers(20, 80, 200), "sex": rng.choice(["F", "M"], 200)}).to_csv(
        root / "data" / "patients.csv", index=False
    )
    settings = {
        "name": "site",
        "broker": "127.0.0.1:7443",
        "tls": {"ca": "pki/ca.pem", "cert": "pki/site.pem", "key": "pki/site.key"},
        "state_dir": "state",
        "sources": {"patients": {"kind": "file", "path": "data/patients.csv"}},
        "egress": {
            "allow": ["synthetic"],
            "topologies": ["local"],
            "min_audit": LENIENT_THRESHOLDS,
        },
        "privacy_cap": {"epsilon": 4.0, "delta": 1e-5},
    }
    (root / "agent.yaml").write_text(yaml.safe_dump(settings))
    return AgentConfig.load(root / "agent.yaml")


def local_job(dp: bool) -> dict[str, Any]:
    """A `local` job of this site and a peer whose audit bar no output meets; with `dp`, a
    dp-marginal fit at (EPSILON, DELTA), else a copula."""
    job: dict[str, Any] = {
        "name": "local-audit-fails",
        "topology": "local",
        "suppliers": [{"supplier": s, "source": "patients"} for s in ("site", "peer-1")],
        "schema": PLAIN,
        "synthesizer": {"name": "copula"},
        "rows": 100,
        "audit_policy": UNREACHABLE,
    }
    if dp:
        job["synthesizer"] = {"name": "dp-marginal"}
        job["privacy"] = {"epsilon": EPSILON, "delta": DELTA}
    return job


def synthesize(config: AgentConfig, dp: bool) -> supplier_pb2.TaskResult:
    """What the real agent reports for its `synthesize_locally` task of `local_job(dp)`."""
    return run(config, HostileBroker(), "synthesize_locally", {"job": local_job(dp), "rows": 50})


def failed_checks(config: AgentConfig) -> list[str]:
    """The checks the site's own audit report (kept at the site) lists as failed."""
    path = config.state_dir / "reports" / "job-1.0.site" / "audit.json"
    return [c.name for c in AuditReport.from_json(path.read_text()).failed_checks]


def charges(config: AgentConfig) -> list[tuple[str, str, float, float, str | None]]:
    """Every charge in the site's own ledger: (release id, source, epsilon, delta, RDP curve)."""
    with sqlite3.connect(config.state_dir / LEDGER_FILE) as db:
        return db.execute("SELECT release_id, source, epsilon, delta, rdp FROM charges").fetchall()


def test_a_local_dp_fit_whose_output_fails_the_sites_audit_stays_charged(
    tmp_path: Path,
) -> None:
    config = site_config(tmp_path)
    report = synthesize(config, dp=True)
    assert not report.ok and "failed its own audit" in report.error
    assert not json.loads(report.result_json or b"{}").get("uploads")
    assert charges(config) == [("job-1.0.site", "patients", EPSILON, DELTA, None)]


def test_a_failed_local_audit_names_its_checks_only_in_a_job_without_dp(tmp_path: Path) -> None:
    private = site_config(tmp_path / "dp")
    refused = synthesize(private, dp=True).error
    failed = failed_checks(private)
    assert failed and not [name for name in failed if name in refused]
    assert "The checks are in the site's audit report, kept at the site" in refused
    plain = site_config(tmp_path / "plain")
    refused = synthesize(plain, dp=False).error
    failed = failed_checks(plain)
    assert failed and all(name in refused for name in failed)
