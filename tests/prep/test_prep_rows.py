"""`fedsynth prep run` on malformed files: every record counted, bad ones quarantined by row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from fedsynth.prep import PrepSpec, prepare
from fedsynth.prep.cli import app
from fedsynth.prep.report import REDACTED
from fedsynth.prep.source import read_raw
from fedsynth.schema import TableSchema

HEADER = "mrn,first_name,surname,dob,stay"
SCHEMA = """
name: people
columns:
  - {name: first_name, kind: identifier}
  - {name: last_name, kind: identifier}
  - {name: birth_date, kind: datetime, role: quasi_identifier}
  - {name: stay, kind: numerical, dtype: int, min: 0, max: 100}
"""
SPEC = """
source: s
rename: {surname: last_name, dob: birth_date}
drop: [mrn]
linkage:
  fields:
    - {column: first_name, bloom_hashes: 10}
    - {column: last_name, bloom_hashes: 10}
    - {column: birth_date, bloom_hashes: 10}
  exact_key: [first_name, last_name, birth_date]
  blocking:
    - {name: year, parts: [{column: birth_date, transform: year}]}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "spec.yaml").write_text(SPEC)
    key = tmp_path / "linkage.key"
    key.write_text("rows-test-secret-0123456789abcdef")
    key.chmod(0o600)
    return tmp_path


def _prep(workdir: Path, source: Path) -> Result:
    return CliRunner().invoke(
        app,
        [
            "run",
            str(source),
            "--spec",
            str(workdir / "spec.yaml"),
            "--schema",
            str(workdir / "schema.yaml"),
            "--out",
            str(workdir / "out.parquet"),
            "--quarantine",
            str(workdir / "q.csv"),
            "--report",
            str(workdir / "report.json"),
            "--secret-file",
            str(workdir / "linkage.key"),
        ],
    )


def _csv(workdir: Path, *rows: str, name: str = "in.csv") -> Path:
    path = workdir / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _quarantine(workdir: Path) -> list[tuple[int, str, str]]:
    with open(workdir / "q.csv", newline="") as fh:
        return [(int(r["source_row"]), r["column"], r["rule"]) for r in csv.DictReader(fh)]


def _report(workdir: Path) -> dict:
    return json.loads((workdir / "report.json").read_text())


def test_blank_rows_are_counted_and_quarantined_at_their_data_row(workdir: Path) -> None:
    source = _csv(
        workdir,
        "1,Ann,Lee,1980-01-02,3",
        "2,Bob,Kim,1970-05-06,4",
        "",
        ",,,,",
        "3,Cat,Fox,1990-07-08,5",
        "4,Dan,Roe,1960-09-10,-3",
    )
    result = _prep(workdir, source)
    assert result.exit_code == 3, result.output  # rows quarantined
    report = _report(workdir)
    assert (report["rows_in"], report["rows_out"], report["rows_quarantined"]) == (6, 3, 3)
    assert "6 rows in" in result.output
    assert _quarantine(workdir) == [
        (3, "", "blank_row"),
        (4, "", "blank_row"),
        (6, "stay", "minimum"),
    ]


def test_row_with_too_few_fields_is_quarantined_not_filled_with_nulls(workdir: Path) -> None:
    source = _csv(workdir, "1,Ann,Lee,1980-01-02,3", "A99,Short,Row", "2,Bob,Kim,1970-05-06,4")
    result = _prep(workdir, source)
    assert result.exit_code == 3, result.output  # rows quarantined
    assert len(pd.read_parquet(workdir / "out.parquet")) == 2
    assert _quarantine(workdir) == [(2, "", "field_count")]
    assert "3 field(s) where the header has 5" in (workdir / "q.csv").read_text()


def test_row_with_too_many_fields_is_quarantined_and_the_rest_prepared(workdir: Path) -> None:
    source = _csv(
        workdir, "1,Ann,Lee,1980-01-02,3", "2,Bob,Kim,1970-05-06,4,extra", "3,Cat,Fox,1990-07-08,5"
    )
    result = _prep(workdir, source)
    assert result.exit_code == 3, result.output  # rows quarantined
    assert len(pd.read_parquet(workdir / "out.parquet")) == 2
    assert _quarantine(workdir) == [(2, "", "field_count")]
    assert _report(workdir)["rows_in"] == 3


def test_unreadable_row_text_is_redacted_when_the_source_holds_identifiers(workdir: Path) -> None:
    _prep(workdir, _csv(workdir, "A99,Short,Row"))
    assert "Short" not in (workdir / "q.csv").read_text()
    assert REDACTED in (workdir / "q.csv").read_text()


def test_unreadable_row_text_is_kept_when_the_source_has_no_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("stay\n3\n4,5\n")
    schema = TableSchema.from_yaml("name: t\ncolumns:\n  - {name: stay, kind: numerical}\n")
    result = prepare(read_raw(path), PrepSpec.from_yaml("source: s"), schema)
    assert [(e.source_row, e.value, e.rule) for e in result.quarantine] == [
        (2, "4,5", "field_count")
    ]
    assert (result.report.rows_in, result.report.rows_out) == (2, 1)


def test_empty_file_is_refused_naming_the_file(workdir: Path) -> None:
    source = workdir / "empty.csv"
    source.write_bytes(b"")
    result = _prep(workdir, source)
    assert result.exit_code == 2
    assert "empty.csv: the file is empty" in result.output


def test_header_only_file_prepares_zero_rows(workdir: Path) -> None:
    result = _prep(workdir, _csv(workdir))
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(workdir / "out.parquet")) == 0
    assert _quarantine(workdir) == []
    assert _report(workdir)["rows_in"] == 0


def test_repeated_header_name_is_refused_naming_it(workdir: Path) -> None:
    source = workdir / "dup.csv"
    source.write_text("mrn,first_name,surname,dob,dob\n1,Ann,Lee,1980-01-02,3\n")
    result = _prep(workdir, source)
    assert result.exit_code == 2
    assert "the header repeats column(s) ['dob']" in result.output


def test_file_named_parquet_that_is_not_parquet_is_refused_naming_it(workdir: Path) -> None:
    source = workdir / "fake.parquet"
    source.write_text(HEADER + "\n1,Ann,Lee,1980-01-02,3\n")
    result = _prep(workdir, source)
    assert result.exit_code == 2
    assert "fake.parquet: not a readable Parquet file" in result.output
