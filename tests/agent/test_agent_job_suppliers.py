"""A task for a supplier the job does not name is refused naming the supplier and the job's
suppliers, instead of failing with an empty StopIteration."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsynth.jobs import JobSpec, JobSpecError
from supplier_agent.config import AgentConfig
from supplier_agent.outgoing import TaskRefused
from supplier_agent.tasks import TaskContext, TaskPayload

CONFIG = """
name: site-c
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/site-c.pem, key: pki/site-c.key}
state_dir: state
sources:
  rows: {kind: file, path: rows.csv}
"""

JOB = {
    "name": "j",
    "topology": "federated",
    "suppliers": [{"supplier": "site-a", "source": "s"}, {"supplier": "site-b", "source": "s"}],
    "schema": {
        "name": "patients",
        "columns": [{"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120}],
    },
    "synthesizer": {"name": "copula"},
    "rows": 10,
}

NAMED = r"job 'j' does not name supplier 'site-c'; its suppliers are 'site-a', 'site-b'"


def test_a_supplier_outside_the_job_is_refused_naming_the_jobs_suppliers() -> None:
    job = JobSpec.model_validate(JOB)
    with pytest.raises(JobSpecError, match=NAMED):
        job.source_of("site-c")
    with pytest.raises(JobSpecError, match=NAMED):
        job.schema_for("site-c")


def test_an_agent_given_a_task_of_a_job_without_it_gets_a_readable_reason(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(CONFIG)
    config = AgentConfig.load(tmp_path / "agent.yaml")
    payload = TaskPayload(job=JobSpec.model_validate(JOB), rows=5)
    ctx = TaskContext(config, "job-1", "job-1.0.site-c", payload, tmp_path, lambda s, p: p)
    with pytest.raises(TaskRefused, match=NAMED):
        ctx.source  # noqa: B018
