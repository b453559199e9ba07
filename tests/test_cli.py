"""The `fedsynth` command as a person uses it: infer a schema, validate files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fedsynth.cli import app
from fedsynth.schema import TableSchema

runner = CliRunner()


def make_csv(path: Path, bad: bool = False) -> Path:
    rows = ["id,age,sex", *(f"p{i},{20 + i % 50},{'F' if i % 2 else 'M'}" for i in range(60))]
    if bad:
        rows += ["p99,-5,F", "p100,40,Q"]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_schema_infer_writes_a_reviewable_schema(tmp_path: Path) -> None:
    data = make_csv(tmp_path / "people.csv")
    result = runner.invoke(app, ["schema", "infer", str(data), "--out", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    schema = TableSchema.load(tmp_path / "s.yaml")
    assert [c.kind for c in schema.columns] == ["identifier", "numerical", "categorical"]
    assert "review before sharing" in result.output and "age" in result.output


def test_validate_exits_zero_on_a_clean_file(tmp_path: Path) -> None:
    data = make_csv(tmp_path / "people.csv")
    runner.invoke(app, ["schema", "infer", str(data), "--out", str(tmp_path / "s.yaml")])
    result = runner.invoke(app, ["validate", str(data), "--schema", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    assert "60 rows in, 60 accepted, 0 quarantined" in result.output


def test_validate_exits_three_and_writes_quarantine_when_rows_are_bad(tmp_path: Path) -> None:
    runner.invoke(
        app, ["schema", "infer", str(make_csv(tmp_path / "a.csv")), "-o", str(tmp_path / "s.yaml")]
    )
    data = make_csv(tmp_path / "b.csv", bad=True)
    q, out = tmp_path / "q.csv", tmp_path / "ok.parquet"
    result = runner.invoke(
        app,
        ["validate", str(data), "-s", str(tmp_path / "s.yaml"), "-q", str(q), "-o", str(out)],
    )
    assert result.exit_code == 3, result.output
    assert "62 rows in, 60 accepted, 2 quarantined" in result.output
    assert "minimum" in result.output and "domain" in result.output
    assert pd.read_csv(q)["_row"].tolist() == [61, 62]
    assert len(pd.read_parquet(out)) == 60


def test_validate_exits_two_with_the_reason_when_the_file_is_refused(tmp_path: Path) -> None:
    runner.invoke(
        app, ["schema", "infer", str(make_csv(tmp_path / "a.csv")), "-o", str(tmp_path / "s.yaml")]
    )
    data = tmp_path / "semi.csv"
    data.write_text("id;age;sex\np1;3;F\n")
    result = runner.invoke(app, ["validate", str(data), "-s", str(tmp_path / "s.yaml"), "-d", ","])
    assert result.exit_code == 2
    assert "refused" in result.output and "--delimiter ';'" in result.output


def test_bad_schema_file_exits_two_listing_problems(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: t\ncolumns: []\n")
    result = runner.invoke(app, ["schema", "check", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2 and "columns" in result.output


def test_json_schema_export_is_valid_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "json-schema", "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"] == "TableSchema"


def test_console_scripts_are_installed() -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for script in ("fedsynth", "fedsynth-broker", "fedsynth-supplier", "fedsynth-consumer"):
        done = subprocess.run(
            [script, "--help"], capture_output=True, text=True, env=env, check=False, timeout=60
        )
        assert done.returncode == 0, f"{script}: {done.stderr}"
        assert "Usage" in done.stdout


def test_an_output_that_would_replace_the_input_or_another_output_is_refused(
    tmp_path: Path,
) -> None:
    data = make_csv(tmp_path / "people.csv", bad=True)
    before = data.read_bytes()
    runner.invoke(app, ["schema", "infer", str(data), "--out", str(tmp_path / "s.yaml")])
    schema = str(tmp_path / "s.yaml")
    same = str(tmp_path / "same.csv")
    (tmp_path / "folder").mkdir()
    attempts = {
        "--quarantine": ["-q", str(data)],
        "writes there too": ["-q", same, "-o", same],
        "is a folder": ["-o", str(tmp_path / "folder")],
        "is a file, not a folder": ["-o", str(data / "rows.parquet")],
    }
    for reason, options in attempts.items():
        result = runner.invoke(app, ["validate", str(data), "-s", schema, *options])
        assert result.exit_code == 2, result.output
        assert reason in result.output and "Traceback" not in result.output
    assert data.read_bytes() == before
    assert not Path(same).exists()
    result = runner.invoke(app, ["schema", "infer", str(data), "--out", str(data)])
    assert result.exit_code == 2 and data.read_bytes() == before


def test_a_path_the_system_refuses_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    data = make_csv(tmp_path / "people.csv")
    command = Path(sys.executable).parent / "fedsynth"
    done = subprocess.run(
        [str(command), "schema", "infer", str(data), "--out", "/proc/fedsynth-test/s.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "check the path" in done.stderr and "Traceback" not in done.stderr


def test_validate_reads_a_tab_delimiter_typed_as_backslash_t(tmp_path: Path) -> None:
    data = tmp_path / "people.tsv"
    data.write_text("id\tage\np1\t30\np2\t41\n")
    runner.invoke(app, ["schema", "infer", str(data), "--out", str(tmp_path / "s.yaml")])
    result = runner.invoke(
        app, ["validate", str(data), "--schema", str(tmp_path / "s.yaml"), "-d", "\\t"]
    )
    assert result.exit_code == 0, result.output
    assert "2 rows in, 2 accepted" in result.output


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["-d", "ab"], "the delimiter 'ab' is not one ASCII character. Fix: give --delimiter"),
        (["-d", "§"], "the delimiter '§' is not one ASCII character. Fix: give --delimiter"),
        (["--encoding", "bogus"], "unknown text encoding 'bogus'. Fix: give --encoding"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "infer"])
def test_an_unusable_delimiter_or_encoding_is_one_error_line_naming_the_option(
    tmp_path: Path, options: list[str], named: str, command: str
) -> None:
    data = make_csv(tmp_path / "people.csv")
    schema = tmp_path / "s.yaml"
    runner.invoke(app, ["schema", "infer", str(data), "--out", str(schema)])
    args = (
        ["validate", str(data), "--schema", str(schema)]
        if command == "validate"
        else ["schema", "infer", str(data), "--out", str(tmp_path / "other.yaml")]
    )
    result = runner.invoke(app, [*args, *options])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"{data}: {named}" in result.output


def test_schema_infer_refuses_a_header_with_an_unnamed_column(tmp_path: Path) -> None:
    data = tmp_path / "unnamed.csv"
    data.write_text(",b,\n1,x,2\n")
    result = runner.invoke(app, ["schema", "infer", str(data), "--out", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "the header gives column(s) 1, 3 (counting from 1) no name. Fix: name" in result.output


@pytest.mark.parametrize("command", ["validate", "infer"])
def test_a_nested_parquet_column_is_refused_naming_it(tmp_path: Path, command: str) -> None:
    data = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"n": [1, 2], "tags": [[1, 2], [3]]}), data)
    schema = tmp_path / "s.yaml"
    schema.write_text(
        "name: t\ncolumns:\n- {name: n, kind: numerical}\n- {name: tags, kind: text}\n"
    )
    args = (
        ["validate", str(data), "--schema", str(schema)]
        if command == "validate"
        else ["schema", "infer", str(data), "--out", str(tmp_path / "other.yaml")]
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "column 'tags' holds nested values" in result.output
    assert "nested columns are not supported. Fix: flatten 'tags'" in result.output


def test_a_short_row_with_a_non_utf8_byte_is_an_encoding_error_naming_the_line(
    tmp_path: Path,
) -> None:
    data = make_csv(tmp_path / "people.csv")
    runner.invoke(app, ["schema", "infer", str(data), "--out", str(tmp_path / "s.yaml")])
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join([*lines[:3], b"Ren\xe9e,short\n", *lines[3:]]))
    schema, quarantine = str(tmp_path / "s.yaml"), str(tmp_path / "q.csv")
    # A subprocess: Arrow prints a failure in its row handler to the real stderr.
    cli = [sys.executable, "-c", "from fedsynth.cli import main; main()"]
    done = subprocess.run(
        [*cli, "validate", str(data), "-s", schema, "-q", quarantine],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "not valid utf-8 at line 4" in done.stderr and "iconv" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "CSV parse error" not in done.stderr + done.stdout
