"""`--help` of every operator and consumer subcommand works without certificates or a broker; a
command that needs the connection still names the options it lacks (exit 2)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from consumer_client.cli import app as consumer_app
from fedsynth.cli import app as fedsynth_app
from fedsynth.operator.cli import app as operator_app

NO_IDENTITY = {"FEDSYNTH_CERT": None, "FEDSYNTH_KEY": None, "FEDSYNTH_BROKER": None}
runner = CliRunner()


def subcommands(app: typer.Typer) -> list[str]:
    return sorted(typer.main.get_group(app).commands)


@pytest.mark.parametrize("command", subcommands(operator_app))
def test_operator_subcommand_help_needs_no_certificate(command: str) -> None:
    for app, prefix in ((operator_app, []), (fedsynth_app, ["operator"])):
        result = runner.invoke(app, [*prefix, command, "--help"], env=NO_IDENTITY)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output and "Missing option" not in result.output


@pytest.mark.parametrize("command", subcommands(consumer_app))
def test_consumer_subcommand_help_needs_no_broker(command: str) -> None:
    result = runner.invoke(consumer_app, [command, "--help"], env=NO_IDENTITY)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "Missing option" not in result.output


def test_the_subcommands_are_the_ones_people_use() -> None:
    assert subcommands(operator_app) == [
        "cancel",
        "list",
        "releases",
        "status",
        "submit",
        "withdraw",
    ]
    assert subcommands(consumer_app) == ["list", "pull", "report", "show"]


def test_an_operator_command_without_certificate_names_what_is_missing() -> None:
    result = runner.invoke(operator_app, ["--key", "ops.key", "status", "job-1"], env=NO_IDENTITY)
    assert result.exit_code == 2
    assert "Missing option '--cert' (or FEDSYNTH_CERT)" in result.output
    assert "--key'" not in result.output


def test_a_consumer_command_without_broker_names_what_is_missing() -> None:
    result = runner.invoke(consumer_app, ["list"], env=NO_IDENTITY)
    assert result.exit_code == 2
    assert "Missing option '--broker' (or FEDSYNTH_BROKER)" in result.output
    assert all(f"FEDSYNTH_{name}" in result.output for name in ("CERT", "KEY"))


@pytest.mark.parametrize("app", [consumer_app, operator_app], ids=["consumer", "operator"])
def test_a_broker_address_without_a_port_is_refused_in_one_line(app: typer.Typer) -> None:
    """gRPC would dial port 443 of a bare host name without a word."""
    result = runner.invoke(app, ["--broker", "127.0.0.1", "--cert", "c", "--key", "k", "list"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --broker '127.0.0.1' must be host:port")
    assert result.output.count("\n") == 1


def test_the_consumer_reads_its_connection_from_the_same_variables_as_the_operator(
    tmp_path,
) -> None:
    env = {
        "FEDSYNTH_BROKER": "127.0.0.1:1",
        "FEDSYNTH_CA": str(tmp_path / "ca.pem"),
        "FEDSYNTH_CERT": str(tmp_path / "analyst.pem"),
        "FEDSYNTH_KEY": str(tmp_path / "analyst.key"),
    }
    result = runner.invoke(consumer_app, ["list"], env=env)
    assert result.exit_code == 2 and "Missing option" not in result.output
    assert str(tmp_path / "ca.pem") in result.output or "analyst" in result.output
