"""`fedsynth privacy`: the ledger view and the DP-SGD price, as a person runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedsynth.privacy.accountant import approximate_cost, subsampled_gaussian_cost
from fedsynth.privacy.cli import app
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.spec import BudgetCap


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
