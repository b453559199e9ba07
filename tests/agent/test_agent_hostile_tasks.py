"""Tasks a hostile broker could craft, run by the real agent: nothing of the site's rows leaves
through error messages, a job's plan bounds which tasks run, and oversized inputs are refused
before they fill the disk or the memory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsynth.wire.bulk import ChunkFrame
from fedsynth.wire.v1 import common_pb2, supplier_pb2
from supplier_agent.agent import SupplierAgent
from supplier_agent.config import AgentConfig

CONFIG = """
name: site
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/site.pem, key: pki/site.key}
state_dir: state
sources:
  patients: {kind: file, path: data/patients.csv}
egress:
  allow: [statistics, synthetic]
  topologies: [federated, local]
max_input_bytes: 65536
"""
SCHEMA: dict[str, Any] = {
    "name": "patients",
    "columns": [
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
        {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
        {"name": "patient_name", "kind": "text"},
        {"name": "leak", "kind": "datetime"},
    ],
}
PLAIN: dict[str, Any] = {"name": "patients", "columns": SCHEMA["columns"][:2]}


class HostileBroker:
    """Stands for a broker that crafts tasks: it records what the agent reports, keeps every
    task open, and serves `artifacts` (sha256 -> frames) when the agent fetches one."""

    def __init__(self, artifacts: dict[str, list[Any]] | None = None) -> None:
        self.reports: list[supplier_pb2.TaskResult] = []
        self.artifacts = artifacts or {}

    def ReportResult(self, result: supplier_pb2.TaskResult, **_: Any) -> supplier_pb2.Ack:
        self.reports.append(result)
        return supplier_pb2.Ack(accepted=True)

    def CheckTask(self, ref: supplier_pb2.TaskRef, **_: Any) -> supplier_pb2.TaskStatus:
        return supplier_pb2.TaskStatus(open=True)

    def FetchArtifact(self, request: supplier_pb2.FetchArtifactRequest, **_: Any) -> Any:
        return iter(self.artifacts[request.sha256])


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    (tmp_path / "data").mkdir()
    names = [f"Person{i:04d} Secretname" for i in range(40)]
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"age": rng.integers(20, 80, 40), "sex": rng.choice(["F", "M"], 40), "patient_name": names}
    ).to_csv(tmp_path / "data" / "patients.csv", index=False)
    (tmp_path / "agent.yaml").write_text(CONFIG)
    return AgentConfig.load(tmp_path / "agent.yaml")


def job(schema: dict[str, Any] = SCHEMA, **extra: Any) -> dict[str, Any]:
    return {
        "name": "crafted",
        "topology": "federated",
        "suppliers": [{"supplier": s, "source": "patients"} for s in ("site", "peer-1", "peer-2")],
        "schema": schema,
        "synthesizer": {"name": "copula"},
        "rows": 100,
        **extra,
    }


def run(config: AgentConfig, broker: HostileBroker, kind: str, payload: dict[str, Any]) -> Any:
    agent = SupplierAgent(config)
    try:
        agent.handle(
            broker,
            supplier_pb2.Task(
                task_id="job-1.0.site",
                job_id="job-1",
                kind=kind,
                payload_json=json.dumps(payload).encode(),
            ),
        )
    finally:
        agent.journal.close()
    (report,) = broker.reports
    return report


def test_an_error_quoting_the_sites_rows_reaches_the_broker_without_them(
    config: AgentConfig, tmp_path: Path
) -> None:
    leaking = {
        "site": {
            "source": "patients",
            "derive": [{"name": "leak", "expr": "date(patient_name)"}],
        }
    }
    report = run(config, HostileBroker(), "marginal_stats", {"job": job(prep=leaking), "rows": 0})
    assert not report.ok
    assert "Secretname" not in report.error and "Person0" not in report.error
    assert "the message stays in the site's log, reference" in report.error


def test_a_task_kind_outside_the_jobs_plan_is_refused(config: AgentConfig) -> None:
    dp_job = job(synthesizer={"name": "dp-marginal"}, privacy={"epsilon": 1.0})
    report = run(config, HostileBroker(), "marginal_stats", {"job": dp_job, "rows": 0})
    assert not report.ok
    assert "task kind 'marginal_stats' is no step of this federated job's plan" in report.error


@pytest.mark.parametrize(
    "extra",
    [
        {"suppliers": [{"supplier": s, "source": "patients"} for s in ("site", "peer-1")]},
        {"quorum": 2},
    ],
)
def test_exact_statistics_for_a_merge_of_two_sites_are_refused(
    config: AgentConfig, extra: dict[str, Any]
) -> None:
    """With two sites, each gets the merged sums back and subtracts its own: a malicious site
    read the other's exact counts of every column."""
    report = run(config, HostileBroker(), "marginal_stats", {"job": job(**extra), "rows": 0})
    assert not report.ok
    assert "exact statistics of 2 site(s), fewer than this site's egress.min_parties (3)" in (
        report.error
    )


def test_a_payload_asking_for_more_rows_than_any_job_may_release_is_refused(
    config: AgentConfig,
) -> None:
    report = run(
        config,
        HostileBroker(),
        "synthesize_locally",
        {"job": job(topology="local"), "rows": 10**10},
    )
    assert not report.ok and "the task payload is invalid" in report.error


def test_a_candidate_announced_past_the_input_cap_is_refused_before_it_is_written(
    config: AgentConfig,
) -> None:
    sha = "ab" * 32
    broker = HostileBroker({sha: [common_info(sha, 1 << 44)]})
    report = run(
        config, broker, "audit_candidate", {"job": job(), "rows": 0, "inputs": {"candidate": sha}}
    )
    assert not report.ok
    assert not any(config.state_dir.rglob("*.part"))


def test_a_candidate_that_decodes_past_the_cap_is_refused_from_its_footer(
    config: AgentConfig, tmp_path: Path
) -> None:
    rows = 100
    zeros = pa.array(np.zeros(rows, dtype=np.int32))
    bomb = pa.table({"age": pa.DictionaryArray.from_arrays(zeros, pa.array(["4" * 4096]))})
    path = tmp_path / "bomb.parquet"
    pq.write_table(bomb, path, compression="zstd")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    broker = HostileBroker({sha: [common_info(sha, len(data)), ChunkFrame(0, data)]})
    report = run(
        config, broker, "audit_candidate", {"job": job(), "rows": 0, "inputs": {"candidate": sha}}
    )
    assert not report.ok
    assert "bytes decoded; this site audits at most 65536 (max_input_bytes)" in report.error


def common_info(sha: str, size: int) -> common_pb2.ObjectInfo:
    return common_pb2.ObjectInfo(sha256=sha, size=size, media_type="application/octet-stream")
