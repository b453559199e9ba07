"""`fedsynth-supplier run` refuses a config it cannot use, naming the file and each problem."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from supplier_agent.cli import app


def test_run_with_a_broken_config_exits_with_every_problem_named(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("name: north\nbroker: nowhere\nsources: {}\n")
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    for problem in ("agent.yaml", "host:port", "tls", "state_dir", "sources"):
        assert problem in result.output


def test_run_with_a_missing_config_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "agent config not found" in result.output
