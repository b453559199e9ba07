"""The commands agree with one another: every command that reads a table takes the same
--delimiter/--encoding and reads a file the same way; a flag an error message suggests exists on
the command that printed it; seeds are 0 or more everywhere; the consumer and operator CLIs exit
with the same codes; the agent's --config has -c like the broker's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from consumer_client import cli as consumer_cli
from consumer_client.client import ReleaseVerificationError
from fedsynth.cli import app
from fedsynth.operator import cli as operator_cli
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from supplier_agent.cli import app as agent_app

runner = CliRunner()
SCHEMA = """
name: people
columns:
  - {name: name, kind: categorical, domain: [Ann, Bo, Cy]}
  - {name: age, kind: numerical, dtype: int, min: 0, max: 120}
"""
READERS = {
    "validate": ["validate"],
    "schema infer": ["schema", "infer"],
    "prep run": ["prep", "run"],
    "synth fit": ["synth", "fit"],
    "audit": ["audit"],
}
ROWS = [(("Ann", "Bo", "Cy")[i % 3], str(20 + i)) for i in range(30)]


def command(path: list[str]) -> Any:
    """The command object (typer's click core) of `fedsynth PATH...`."""
    found = typer.main.get_command(app)
    for name in path:
        found = found.commands[name]
    return found


def all_commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every command under `group`, by its full name."""
    if not hasattr(group, "commands"):
        return {prefix: group}
    found: dict[str, Any] = {}
    for name, sub in group.commands.items():
        found |= all_commands(sub, f"{prefix} {name}".strip())
    return found


def option(cmd: Any, name: str) -> Any:
    return next(p for p in cmd.params if p.name == name)


def write_csv(
    path: Path,
    rows: list[tuple[str, ...]],
    *,
    delimiter: str = ",",
    end: str = "",
    bom: bool = False,
    encoding: str = "utf-8",
) -> Path:
    """A CSV file of a name,age header and `rows`, each line ending in `end`."""
    lines = [delimiter.join(("name", "age")) + end, *(delimiter.join(r) + end for r in rows)]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode(encoding))
    return path


def reader_args(name: str, data: Path, tmp_path: Path) -> list[str]:
    """The arguments of reader `name` on `data` (the audit reads it as real, holdout and
    synthetic rows)."""
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA)
    spec = tmp_path / "spec.yaml"
    spec.write_text("source: people\n")
    return {
        "validate": ["validate", str(data), "--schema", str(schema)],
        "schema infer": ["schema", "infer", str(data), "--out", str(tmp_path / "inferred.yaml")],
        "prep run": [
            "prep", "run", str(data), "--spec", str(spec), "--schema", str(schema),
            "--out", str(tmp_path / "prepared.parquet"), "--quarantine", str(tmp_path / "q.csv"),
        ],
        "synth fit": [
            "synth", "fit", str(data), "--schema", str(schema), "--out", str(tmp_path / "m.fsm"),
        ],
        "audit": [
            "audit", "--real", str(data), "--synthetic", str(data), "--holdout", str(data),
            "--schema", str(schema), "--json", str(tmp_path / "r.json"),
            "--html", str(tmp_path / "r.html"),
        ],
    }[name]  # fmt: skip


@pytest.fixture
def audit_stops_after_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit` reads its files, then stops (exit 2) instead of running the whole audit."""
    import fedsynth.audit.runner

    def stop(*args: object, **kwargs: object) -> None:
        raise ValueError("every file was read")

    monkeypatch.setattr(fedsynth.audit.runner, "run", stop)


def test_every_table_reading_command_has_the_same_delimiter_and_encoding_options() -> None:
    shapes = set()
    for path in READERS.values():
        cmd = command(path)
        delimiter, encoding = option(cmd, "delimiter"), option(cmd, "encoding")
        shapes.add(
            (
                tuple(delimiter.opts),
                delimiter.default,
                delimiter.help,
                tuple(encoding.opts),
                encoding.default,
                encoding.help,
            )
        )
    assert len(shapes) == 1, shapes
    ((delimiter_opts, delimiter_default, _, encoding_opts, encoding_default, _),) = shapes
    assert delimiter_opts == ("--delimiter", "-d") and delimiter_default is None
    assert encoding_opts == ("--encoding",) and encoding_default == "utf-8"


@pytest.mark.usefixtures("audit_stops_after_reading")
@pytest.mark.parametrize("reader", READERS)
def test_a_semicolon_export_with_a_bom_and_trailing_delimiters_reads_in_every_command(
    tmp_path: Path, reader: str
) -> None:
    data = write_csv(tmp_path / "people.csv", ROWS, delimiter=";", end=";", bom=True)
    result = runner.invoke(app, reader_args(reader, data, tmp_path))
    if reader == "audit":
        assert result.exit_code == 2 and "every file was read" in result.output, result.output
    else:
        assert result.exit_code == 0, result.output
    assert "note: " in result.output and "column 3 has no name" in result.output


@pytest.mark.usefixtures("audit_stops_after_reading")
@pytest.mark.parametrize("reader", READERS)
def test_a_value_under_an_unnamed_trailing_column_is_refused_naming_its_position(
    tmp_path: Path, reader: str
) -> None:
    rows = [(*row, "x" if i == 4 else "") for i, row in enumerate(ROWS)]
    data = write_csv(tmp_path / "people.csv", rows)
    data.write_text(data.read_text().replace("name,age", "name,age,", 1))
    result = runner.invoke(app, reader_args(reader, data, tmp_path))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "column(s) 3 (counting from 1) no name, but data row 5 holds 'x'" in result.output


CASES = {
    "wrong delimiter": (";", "utf-8", ["-d", ","]),
    "undecodable bytes": (",", "latin-1", []),
    "unknown encoding": (",", "utf-8", ["--encoding", "klingon"]),
}


@pytest.mark.usefixtures("audit_stops_after_reading")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reader", READERS)
def test_every_flag_an_error_suggests_exists_on_the_command_that_prints_it(
    tmp_path: Path, reader: str, case: str
) -> None:
    delimiter, encoding, options = CASES[case]
    rows = [("Zoë", "30"), *ROWS]
    data = write_csv(tmp_path / "people.csv", rows, delimiter=delimiter, encoding=encoding)
    result = runner.invoke(app, [*reader_args(reader, data, tmp_path), *options])
    if case == "wrong delimiter" and reader == "schema infer":
        assert result.exit_code == 0, result.output  # one column named "name;age" is a table
        return
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Usage:" not in result.output, "the reader refused the file, not the parser the flags"
    suggested = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", result.output))
    known = {o for param in command(READERS[reader]).params for o in param.opts}
    assert suggested <= known, (suggested - known, result.output)


def test_every_seed_is_0_or_more_and_a_negative_one_is_a_usage_error(tmp_path: Path) -> None:
    seeds = {
        name: option(cmd, "seed")
        for name, cmd in all_commands(typer.main.get_command(app)).items()
        if any(p.name == "seed" for p in cmd.params)
    }
    assert {"synth sample", "simulate", "hybrid"} <= set(seeds)
    for name, seed in seeds.items():
        assert seed.min == 0, name
    out = str(tmp_path / "x.csv")
    for args in (
        ["simulate", "demo/specs/population.yaml", "--rows", "10", "--out", out],
        ["hybrid", "m.fsm", "--overrides", "o.yaml", "--rows", "10", "--out", out],
    ):
        result = runner.invoke(app, [*args, "--seed", "-1"], env={"COLUMNS": "200"})
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert "'--seed'" in result.output and "greater than or equal to 0" in result.output


def test_linking_a_csv_file_is_one_error_line_naming_the_option(tmp_path: Path) -> None:
    left, right = (write_csv(tmp_path / f"{n}.csv", ROWS) for n in "ab")
    result = runner.invoke(
        app,
        ["link", "--left", str(left), "--right", str(right), "--out", str(tmp_path / "l.parquet")],
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip().splitlines() == [
        f"error: --left {left}: not a Parquet file; run `fedsynth prep run` first, which writes "
        "the prepared table (with its linkage tokens) as Parquet, and link that"
    ]


def consumer_args(tmp_path: Path) -> list[str]:
    """Group options of a consumer dialling a port where no broker answers."""
    ca = FederationCA.init(tmp_path / "pki", "fed")
    cert, key = ca.issue(Role.CONSUMER, "analyst")
    return ["--broker", "127.0.0.1:1", "--ca", str(ca.directory / "ca.pem"),
            "--cert", str(cert), "--key", str(key)]  # fmt: skip


def exit_code(main: object, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """The status a console-script `main` exits with for `argv`."""
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()  # type: ignore[operator]
    return exited.value.code


def test_a_broker_error_exits_as_the_operator_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = consumer_args(tmp_path)
    ca = FederationCA(tmp_path / "pki")
    cert, key = ca.issue(Role.OPERATOR, "alice")
    operator_args = [*args[:4], "--cert", str(cert), "--key", str(key)]
    consumer = exit_code(consumer_cli.main, ["fedsynth-consumer", *args, "list"], monkeypatch)
    operator = exit_code(
        operator_cli.app, ["fedsynth operator", *operator_args, "status", "job-1"], monkeypatch
    )
    assert consumer == operator == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(
        line.startswith("error: cannot reach the broker at 127.0.0.1:1 (connection refused)")
        for line in err
    )


def test_both_clis_document_their_exit_codes() -> None:
    for cli, codes in ((consumer_cli.app, "0 1 2 3"), (operator_cli.app, "0 2")):
        text = runner.invoke(cli, ["--help"], env={"COLUMNS": "200"}).output
        documented = re.findall(r"\b([0-3]) (?:done|a pull|a usage|the release)", text)
        assert "Exit codes:" in text and " ".join(documented) == codes, text


def test_pull_refuses_to_replace_a_file_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.parquet"
    out.write_bytes(b"mine")
    result = runner.invoke(
        consumer_cli.app, [*consumer_args(tmp_path), "pull", "rel-1", "--out", str(out)]
    )
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_bytes() == b"mine"
    assert "--force" in {o for p in typer.main.get_command(consumer_cli.app).commands[
        "pull"].params for o in p.opts}  # fmt: skip


AUDIT_REPORT = {"verdict": "pass", "fidelity": {"score": 0.93}}


class FakeClient:
    """A consumer client whose one release verifies (or not) with a known audit report."""

    verifies = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def show(self, release_id: str) -> SimpleNamespace:
        if not self.verifies:
            raise ReleaseVerificationError(f"release {release_id}: signature does not verify")
        return SimpleNamespace(audit_report=AUDIT_REPORT, attestation={})


def test_report_writes_the_verified_audit_report_and_nothing_when_it_does_not_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_cli, "Client", FakeClient)
    args = consumer_args(tmp_path)
    out = tmp_path / "report.json"
    result = runner.invoke(consumer_cli.app, [*args, "report", "rel-1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == AUDIT_REPORT
    again = runner.invoke(consumer_cli.app, [*args, "report", "rel-1", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    text = runner.invoke(consumer_cli.app, [*args, "report", "rel-1", "--out", "r.txt"])
    assert text.exit_code == 2 and "*.json" in text.output and "*.html" in text.output
    monkeypatch.setattr(FakeClient, "verifies", False)
    refused = tmp_path / "refused.json"
    argv = ["fedsynth-consumer", *args, "report", "rel-1", "--out", str(refused)]
    assert exit_code(consumer_cli.main, argv, monkeypatch) == 3
    assert not refused.exists()


@pytest.mark.parametrize("command_name", ["run", "budget"])
def test_the_agent_config_option_has_the_short_c_the_broker_has(
    tmp_path: Path, command_name: str
) -> None:
    missing = tmp_path / "agent.yaml"
    result = runner.invoke(agent_app, [command_name, "-c", str(missing)])
    assert result.exit_code == 2 and "No such option" not in result.output
    assert str(missing) in result.output
