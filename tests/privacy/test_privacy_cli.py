"""`fedsynth privacy`: the ledger view and the DP-SGD price, as a person runs them."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsynth.privacy.accountant import approximate_cost, subsampled_gaussian_cost
from fedsynth.privacy.cli import AGENT_CAP_DELTA, app
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.spec import BudgetCap
from supplier_agent.cli import app as agent_app
from supplier_agent.config import AgentConfig
from supplier_agent.dp_tasks import LEDGER_FILE

AGENT_CONFIG = """
name: site-a
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/site-a.pem, key: pki/site-a.key}
state_dir: state
privacy_cap: {epsilon: 8.0}
sources:
  visits: {kind: file, path: visits.csv}
"""


def test_ledger_command_shows_spent_and_remaining_budget(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    book = PrivacyLedger(path, supplier="s", cap=BudgetCap(epsilon=2.0))
    book.charge("visits", "r1", approximate_cost(0.5))
    book.charge("visits", "r2", approximate_cost(0.25))
    result = CliRunner().invoke(
        app, ["ledger", str(path), "--supplier", "s", "--cap-epsilon", "2"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "visits" in result.output and "0.75" in result.output and "1.25" in result.output


def test_ledger_command_names_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["ledger", str(tmp_path / "none.sqlite"), "--supplier", "s", "--cap-epsilon", "1"]
    )
    assert result.exit_code == 2 and "no ledger file" in result.output


def test_dpsgd_command_prints_the_accountant_epsilon() -> None:
    args = ["dpsgd", "--sample-rate", "0.01", "--noise-multiplier", "1.1", "--steps", "1000"]
    result = CliRunner().invoke(app, args)
    expected = subsampled_gaussian_cost(0.01, 1.1, 1000).epsilon_at(1e-6)
    assert result.exit_code == 0 and f"{expected:.6g}" in result.output


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--sample-rate", "2"),
        ("--sample-rate", "0"),
        ("--steps", "-10"),
        ("--noise-multiplier", "0"),
        ("--noise-multiplier", "nan"),
        ("--delta", "0"),
        ("--delta", "1"),
    ],
)
def test_dpsgd_refuses_an_option_out_of_range_naming_it(option: str, value: str) -> None:
    args = {"--sample-rate": "0.01", "--noise-multiplier": "1.1", "--steps": "100"}
    args[option] = value
    result = CliRunner().invoke(app, ["dpsgd", *[x for pair in args.items() for x in pair]])
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert "epsilon" not in result.output


def test_ledger_command_refuses_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    garbage = tmp_path / "notadb"
    garbage.write_text("hello")
    other = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE jobs (id TEXT)")
    for path in (garbage, other):
        result = CliRunner().invoke(
            app, ["ledger", str(path), "--supplier", "s", "--cap-epsilon", "1"]
        )
        assert result.exit_code == 2, result.output
        assert "not a privacy ledger" in result.output and "privacy-ledger.sqlite3" in result.output
    with closing(sqlite3.connect(other)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"jobs"}


@pytest.mark.parametrize(("option", "value"), [("--cap-epsilon", "-4"), ("--cap-delta", "0")])
def test_ledger_command_refuses_a_cap_out_of_range_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    path = tmp_path / "ledger.sqlite"
    PrivacyLedger(path, supplier="s", cap=BudgetCap(epsilon=2.0))
    args = ["ledger", str(path), "--supplier", "s", "--cap-epsilon", "2", option, value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output


def test_ledger_command_names_the_suppliers_it_holds_for_an_unknown_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    PrivacyLedger(path, supplier="a", cap=BudgetCap(epsilon=2.0)).charge(
        "visits", "r1", approximate_cost(0.5)
    )
    result = CliRunner().invoke(
        app, ["ledger", str(path), "--supplier", "A", "--cap-epsilon", "2"], terminal_width=200
    )
    assert result.exit_code == 2, result.output
    assert "'A'" in result.output and "'a'" in result.output and "--supplier" in result.output


def test_ledger_command_says_so_when_nothing_was_charged_yet(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    PrivacyLedger(path, supplier="a", cap=BudgetCap(epsilon=2.0))
    result = CliRunner().invoke(app, ["ledger", str(path), "--supplier", "a", "--cap-epsilon", "2"])
    assert result.exit_code == 0 and "no DP release has been charged yet" in result.output


def test_ledger_command_prices_spend_at_the_agents_default_cap_delta(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(AGENT_CONFIG)
    agent = AgentConfig.load(tmp_path / "agent.yaml")
    cap = agent.privacy_cap_for("visits")
    assert cap is not None and cap.delta == AGENT_CAP_DELTA
    book = PrivacyLedger(agent.state_dir / LEDGER_FILE, supplier=agent.name, cap=cap)
    book.charge("visits", "r1", subsampled_gaussian_cost(0.01, 1.1, 1000))
    expected = f"{book.spent('visits').epsilon:.4g}"
    view = CliRunner().invoke(
        app,
        ["ledger", str(book.path), "--supplier", "site-a", "--cap-epsilon", "8"],
        terminal_width=200,
    )
    budget = CliRunner().invoke(agent_app, ["budget", "--config", str(tmp_path / "agent.yaml")])
    assert view.exit_code == 0 and budget.exit_code == 0, view.output + budget.output
    assert expected in view.output and expected in budget.output
