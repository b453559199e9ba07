"""The agent's privacy caps: set for the agent or per source in its config, and an agent with no
cap, or too small a one, refuses DP tasks before it reads any data."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsynth.jobs import JobSpec
from fedsynth.plans import RoundInfo
from fedsynth.privacy.accountant import approximate_cost
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.spec import BudgetCap
from supplier_agent.cli import app
from supplier_agent.config import AgentConfig, AgentConfigError
from supplier_agent.dp_tasks import LEDGER_FILE, dp_measure, secagg_announce
from supplier_agent.outgoing import TaskRefused
from supplier_agent.tasks import TaskContext, TaskPayload, synthesize_locally

CONFIG = """
name: hospital-a
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/hospital-a.pem, key: pki/hospital-a.key}
state_dir: state
privacy_cap: {epsilon: 4.0, delta: 1.0e-5}
sources:
  admissions: {kind: file, path: missing/admissions.csv, privacy_cap: {epsilon: 0.5}}
  registry: {kind: file, path: missing/registry.csv}
"""

SCHEMA = {
    "name": "patients",
    "columns": [
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
        {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
    ],
}


def load(tmp_path: Path, text: str = CONFIG) -> AgentConfig:
    (tmp_path / "agent.yaml").write_text(text)
    return AgentConfig.load(tmp_path / "agent.yaml")


def context(config: AgentConfig, tmp_path: Path, topology: str, source: str) -> TaskContext:
    job = JobSpec.model_validate(
        {
            "name": "dp",
            "topology": topology,
            "suppliers": [
                {"supplier": "hospital-a", "source": source},
                {"supplier": "hospital-b", "source": "x"},
            ],
            "schema": SCHEMA,
            "synthesizer": {"name": "dp-marginal"},
            "privacy": {"epsilon": 1.0, "delta": 1e-6},
            "rows": 10,
        }
    )
    dp_round = RoundInfo(
        number=1, round_id="job-1/round-1", participants=["hospital-a", "hospital-b"], secure=True
    )
    payload = TaskPayload(job=job, rows=5, dp_round=dp_round if topology == "federated" else None)

    def no_fetch(sha256: str, path: Path) -> Path:
        raise AssertionError("a refused task fetches nothing")

    return TaskContext(config, "job-1", "job-1.0.hospital-a", payload, tmp_path, no_fetch)


def test_caps_are_read_for_the_agent_and_per_source(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.privacy_cap_for("admissions") == BudgetCap(epsilon=0.5)
    assert config.privacy_cap_for("registry") == BudgetCap(epsilon=4.0, delta=1e-5)
    bare = load(tmp_path, CONFIG.replace("privacy_cap: {epsilon: 4.0, delta: 1.0e-5}\n", ""))
    assert bare.privacy_cap_for("registry") is None


def test_a_cap_that_is_not_a_positive_budget_is_refused_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError) as err:
        load(tmp_path, CONFIG.replace("epsilon: 4.0", "epsilon: -1").replace("0.5}", ".nan}"))
    text = str(err.value)
    assert "privacy_cap.epsilon" in text and "sources.admissions.privacy_cap.epsilon" in text


@pytest.mark.parametrize("topology", ["federated", "local"])
def test_an_agent_without_a_cap_refuses_every_dp_task(tmp_path: Path, topology: str) -> None:
    bare = load(tmp_path, CONFIG.replace("privacy_cap: {epsilon: 4.0, delta: 1.0e-5}\n", ""))
    ctx = context(bare, tmp_path, topology, "registry")
    handlers = [secagg_announce, dp_measure] if topology == "federated" else [synthesize_locally]
    for handler in handlers:
        with pytest.raises(TaskRefused, match=r"no privacy_cap for source 'registry'"):
            handler(ctx)
    assert not (tmp_path / "state").exists()


def test_a_cap_too_small_for_the_whole_fit_refuses_before_any_data_is_read(
    tmp_path: Path,
) -> None:
    ctx = context(load(tmp_path), tmp_path, "federated", "admissions")
    for handler in (secagg_announce, dp_measure):
        with pytest.raises(TaskRefused, match=r"source 'admissions'.*over the cap \(0.5"):
            handler(ctx)
    with pytest.raises(TaskRefused, match=r"over the cap \(0.5"):
        synthesize_locally(context(load(tmp_path), tmp_path, "local", "admissions"))


def test_budget_command_shows_each_sources_cap_spend_and_remainder(tmp_path: Path) -> None:
    config = load(tmp_path)
    book = PrivacyLedger(
        config.state_dir / LEDGER_FILE, supplier="hospital-a", cap=BudgetCap(epsilon=4.0)
    )
    book.charge("registry", "job-1/round-1", approximate_cost(1.5, 0.0))
    result = CliRunner().invoke(app, ["budget", "--config", str(tmp_path / "agent.yaml")])
    assert result.exit_code == 0, result.output
    cells = [
        [c.strip() for c in line.strip("│ ").split("│")]
        for line in result.output.splitlines()
        if line.startswith("│")
    ]
    rows = {row[0]: row[1:] for row in cells}
    assert rows["registry"] == ["4", "1e-05", "1", "1.5", "2.5"]
    assert rows["admissions"] == ["0.5", "1e-06", "0", "0", "0.5"]


def test_renaming_a_source_in_the_config_keeps_its_spent_budget(tmp_path: Path) -> None:
    config = load(tmp_path)
    book = PrivacyLedger(
        config.state_dir / LEDGER_FILE, supplier="hospital-a", cap=BudgetCap(epsilon=4.0)
    )
    location = config.source("registry").location()
    book.charge("registry", "job-0/round-1", approximate_cost(3.5, 0.0), location=location)
    renamed = load(tmp_path, CONFIG.replace("registry:", "registry-2026:"))
    ctx = context(renamed, tmp_path, "local", "registry-2026")
    with pytest.raises(TaskRefused, match=r"source 'registry-2026'.*epsilon 4\.5.*over the cap"):
        synthesize_locally(ctx)
    result = CliRunner().invoke(app, ["budget", "--config", str(tmp_path / "agent.yaml")])
    assert "registry-2026" in result.output and "3.5" in result.output, result.output
