"""Columns a site withholds leave only as linkage tokens, whatever the job's schema says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsynth.jobs import JobSpec
from fedsynth.prep import PrepSpec
from fedsynth.schema import TableSchema
from supplier_agent.config import AgentConfig
from supplier_agent.outgoing import TaskRefused
from supplier_agent.tasks import TaskContext, TaskPayload
from supplier_agent.withheld import check_withheld
from tests.agent.test_agent_hostile_tasks import HostileBroker, job, run

SCHEMA = TableSchema.model_validate(
    {
        "name": "patients",
        "columns": [
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
            {"name": "full_name", "kind": "text"},
            {"name": "initial", "kind": "text"},
        ],
    }
)


def prep(**fields: Any) -> PrepSpec:
    return PrepSpec.model_validate({"source": "patients", **fields})


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (prep(rename={"patient_name": "full_name"}), "'patient_name' (renamed 'full_name')"),
        (
            prep(derive=[{"name": "initial", "expr": "patient_name"}]),
            "derives a column from it",
        ),
        (
            prep(columns={"patient_name": {"type": "number", "values": {"Person0123": "1"}}}),
            "sets cleansing rules on it",
        ),
        (
            prep(rename={"mrn": "record"}, columns={"record": {"type": "integer"}}),
            "'mrn' (renamed 'record')",
        ),
    ],
)
def test_a_preparation_letting_a_withheld_column_out_is_refused(spec: PrepSpec, said: str) -> None:
    with pytest.raises(TaskRefused, match="is withheld at this site") as refused:
        check_withheld(["patient_name", "mrn"], spec, SCHEMA)
    assert said in str(refused.value)


def test_a_withheld_column_may_not_pick_rows_as_a_required_column() -> None:
    required = TableSchema.model_validate(
        {
            "name": "patients",
            "columns": [
                SCHEMA.columns[0].model_dump(),
                {"name": "surname", "kind": "identifier", "nullable": False},
            ],
        }
    )
    with pytest.raises(TaskRefused, match="requires it"):
        check_withheld(["surname"], prep(), required)


def test_the_shipped_job_passes_the_shipped_sites_withheld_columns() -> None:
    job = JobSpec.load(Path(__file__).resolve().parents[2] / "deploy" / "config" / "job.yaml")
    for site in ("a", "b"):
        agent = Path(__file__).resolve().parents[2] / "deploy" / "config" / f"agent-{site}.yaml"
        config = yaml.safe_load(agent.read_text())
        ((name, source),) = config["sources"].items()
        supplier = config["name"]
        check_withheld(source["withheld"], job.prep_for(supplier, name), job.schema_for(supplier))


def test_a_withheld_column_may_feed_linkage_tokens() -> None:
    linked = prep(linkage={"fields": [{"column": "patient_name", "exact": True}]})
    schema = TableSchema.model_validate(
        {"name": "patients", "columns": [SCHEMA.columns[0].model_dump()]}
    )
    check_withheld(["patient_name"], linked, schema)


CONFIG = """
name: site
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/site.pem, key: pki/site.key}
state_dir: state
sources:
  patients: {kind: file, path: data/patients.csv, withheld: [patient_name]}
egress:
  allow: [prepared, raw]
  topologies: [prepared, central]
"""


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "patients.csv").write_text(
        "age,sex,patient_name\n41,F,Person0001 Secretname\n52,M,Person0002 Secretname\n"
    )
    (tmp_path / "agent.yaml").write_text(CONFIG)
    return AgentConfig.load(tmp_path / "agent.yaml")


def test_an_upload_of_prepared_rows_that_would_carry_a_withheld_column_is_refused(
    config: AgentConfig,
) -> None:
    schema = {"name": "patients", "columns": [*[c.model_dump() for c in SCHEMA.columns[:2]]]}
    crafted = job(
        schema=schema,
        topology="prepared",
        prep={"site": {"source": "patients", "rename": {"patient_name": "full_name"}}},
    )
    report = run(config, HostileBroker(), "upload_prepared", {"job": crafted, "rows": 0})
    assert not report.ok
    assert "'patient_name' (renamed 'full_name') is withheld at this site" in report.error


def test_raw_rows_leave_without_the_withheld_columns(config: AgentConfig, tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        job(
            topology="central",
            schema={"name": "patients", "columns": [SCHEMA.columns[0].model_dump()]},
        )
    )
    context = TaskContext(
        config, "job-1", "job-1.0.site", TaskPayload(job=spec, rows=0), tmp_path, lambda s, p: p
    )
    rows = context.raw_rows()
    assert list(rows.columns) == ["age", "sex"]
