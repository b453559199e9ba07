"""`prep run` (and the supplier agent, which reads files as it does) refuses a file it cannot
read in the words `fedsynth validate` uses, naming the line, byte offset and option to fix; and
exits 3 when it quarantined rows, as `validate` does, with every output still written."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsynth.io import DataFileError, validate_file
from fedsynth.prep.cli import app
from fedsynth.prep.source import SourceFileError, read_raw
from fedsynth.schema import TableSchema

SCHEMA = """
name: people
columns:
  - {name: mrn, kind: identifier}
  - {name: first_name, kind: text}
  - {name: age, kind: numerical, dtype: int, min: 0, max: 120}
"""
BODY = "mrn,first_name,age\n1,Ann,40\n2,José,51\n"

CASES: dict[str, tuple[Callable[[], bytes], dict[str, str]]] = {
    "declared delimiter the header does not use": (lambda: BODY.encode(), {"delimiter": ";"}),
    "Latin-1 bytes in a row": (lambda: BODY.encode("latin-1"), {}),
    "Latin-1 bytes in the header": (
        lambda: BODY.replace("first_name", "prénom", 1).encode("latin-1"),
        {},
    ),
    "unknown encoding": (lambda: BODY.encode(), {"encoding": "klingon"}),
    "UTF-16 byte-order mark": (lambda: BODY.encode("utf-16"), {}),
    "UTF-8 byte-order mark read as cp1252": (
        lambda: codecs.BOM_UTF8 + BODY.encode(),
        {"encoding": "cp1252"},
    ),
    "empty file": (lambda: b"", {}),
    "a delimiter that is not one character": (lambda: BODY.encode(), {"delimiter": ";;"}),
}


@pytest.mark.parametrize("case", CASES)
def test_prep_refuses_a_file_as_validate_does(tmp_path: Path, case: str) -> None:
    content, options = CASES[case]
    path = tmp_path / "people.csv"
    path.write_bytes(content())
    with pytest.raises(DataFileError) as validated:
        validate_file(path, TableSchema.from_yaml(SCHEMA), **options)
    with pytest.raises(SourceFileError) as prepared:
        read_raw(path, **options)
    assert str(prepared.value) == str(validated.value)


def test_the_reported_refusals_name_the_delimiter_and_the_line_byte_and_option(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(BODY)
    with pytest.raises(SourceFileError, match=r"delimited by ',', not the declared ';'.*--delim"):
        read_raw(path, delimiter=";")
    path.write_bytes(BODY.encode("latin-1"))
    with pytest.raises(SourceFileError, match=r"line 3, byte offset 33 \(0xe9\).*--encoding"):
        read_raw(path)
    assert read_raw(path, encoding="latin-1")["first_name"].tolist() == ["Ann", "José"]


def test_a_blank_first_line_is_refused_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("\n" + BODY)
    with pytest.raises(SourceFileError, match="the first line is blank"):
        read_raw(path)


def run_prep(tmp_path: Path, body: str) -> tuple[int, str]:
    (tmp_path / "people.csv").write_text(body)
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "spec.yaml").write_text("source: people\n")
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "people.csv"),
            *("--spec", str(tmp_path / "spec.yaml"), "--schema", str(tmp_path / "schema.yaml")),
            *("--out", str(tmp_path / "out.parquet"), "--quarantine", str(tmp_path / "q.csv")),
        ],
    )
    return result.exit_code, result.output


def test_prep_run_exits_3_when_it_quarantined_rows_and_still_writes_its_outputs(
    tmp_path: Path,
) -> None:
    code, output = run_prep(tmp_path, BODY.replace("51", "151"))
    assert code == 3, output
    assert "1 quarantined" in output and (tmp_path / "out.parquet").is_file()
    assert "151" in (tmp_path / "q.csv").read_text()
    code, output = run_prep(tmp_path, BODY)
    assert code == 0, output


def test_prep_run_help_states_its_exit_codes() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "3 rows quarantined" in result.output and "2 refused" in result.output
