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


GOOD = """
name: north
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/north.pem, key: pki/north.key}
state_dir: state
sources:
  admissions: {kind: file, path: data/admissions.csv}
"""


def test_run_names_missing_tls_files_and_an_unusable_state_folder_before_dialling(
    tmp_path: Path,
) -> None:
    (tmp_path / "blocker").write_text("a file where the state folder should go")
    config = tmp_path / "agent.yaml"
    config.write_text(GOOD.replace("state_dir: state", "state_dir: blocker/state"))
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "tls.ca" in result.output and "tls.key" in result.output
    assert "state_dir" in result.output and "Traceback" not in result.output


def test_a_config_that_is_a_folder_or_not_utf8_is_refused_cleanly(tmp_path: Path) -> None:
    binary = tmp_path / "agent.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    for path, reason in ((tmp_path, "cannot read"), (binary, "not UTF-8")):
        result = CliRunner().invoke(app, ["budget", "--config", str(path)])
        assert result.exit_code == 2, result.output
        assert reason in result.output


def test_a_typo_in_the_sites_audit_bar_stops_the_agent_at_start_up(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(GOOD + "egress: {min_audit: {max_exact_match_rte: 0.01}}\n")
    result = CliRunner().invoke(app, ["budget", "--config", str(config)])
    assert result.exit_code == 2
    assert "max_exact_match_rte" in result.output and "max_exact_match_rate" in result.output
