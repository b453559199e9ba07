"""`prep run` reads CSV files with other delimiters and encodings, as the agent's file sources
may declare them: a semicolon file is sniffed, a cp1252 file is read with --encoding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsynth.prep.cli import app

SCHEMA = """
name: people
columns:
  - {name: name, kind: categorical, domain: [Ann, José]}
  - {name: age, kind: numerical, dtype: int, min: 0, max: 120}
"""


def run_prep(
    tmp_path: Path, source: Path, *options: str, out: str = "out.parquet"
) -> tuple[int, str]:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "spec.yaml").write_text("source: people\n")
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(source),
            "--spec",
            str(tmp_path / "spec.yaml"),
            "--schema",
            str(tmp_path / "schema.yaml"),
            "--out",
            str(tmp_path / out),
            "--quarantine",
            str(tmp_path / "q.csv"),
            *options,
        ],
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("options", [(), ("--delimiter", ";")])
def test_a_semicolon_file_is_read_by_sniffing_or_by_its_declared_delimiter(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name;age\nAnn;40\nBo;51;extra\n")
    code, output = run_prep(tmp_path, source, *options)
    assert code == 3, output  # the row with an extra field is quarantined
    assert pd.read_parquet(tmp_path / "out.parquet").to_dict("list") == {
        "name": ["Ann"],
        "age": [40],
    }
    quarantine = pd.read_csv(tmp_path / "q.csv")
    assert quarantine[["source_row", "rule"]].values.tolist() == [[2, "field_count"]]


def test_a_cp1252_file_is_read_with_its_encoding_and_refused_without_it(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes("name,age\nJosé,40\n".encode("cp1252"))
    code, output = run_prep(tmp_path, source, "--encoding", "cp1252")
    assert code == 0, output
    assert pd.read_parquet(tmp_path / "out.parquet")["name"].tolist() == ["José"]
    code, output = run_prep(tmp_path, source)
    assert code == 2
    assert "UTF-8" in output and "encoding" in output
    code, output = run_prep(tmp_path, source, "--encoding", "klingon")
    assert code == 2 and "unknown text encoding 'klingon'" in output


def test_prepared_rows_named_as_csv_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name,age\nAnn,40\n")
    code, output = run_prep(tmp_path, source, out="prepared.csv")
    assert code == 2
    assert "name it *.parquet" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.csv", "schema.yaml", "spec.yaml"]


def test_a_tab_is_given_as_backslash_t_and_a_long_delimiter_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name\tage\nAnn\t40\n")
    code, output = run_prep(tmp_path, source, "--delimiter", "\\t")
    assert code == 0, output
    code, output = run_prep(tmp_path, source, "--delimiter", ";;")
    assert code == 2 and "not one ASCII character" in output


def test_a_short_row_with_a_byte_that_is_not_utf8_is_an_encoding_error_naming_its_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Arrow decoded the bad row as UTF-8 before calling the row handler: a traceback was
    printed and the file was refused as a CSV parse error."""
    source = tmp_path / "people.csv"
    source.write_bytes(b"name,age\nAnn,40\nRen\xe9e,41,extra\nAnn,42\n")
    code, output = run_prep(tmp_path, source)
    printed = output + "".join(capfd.readouterr())
    assert code == 2
    assert "not valid utf-8 at line 3" in printed and "iconv" in printed
    assert "Traceback" not in printed and "Exception ignored" not in printed
    assert "CSV parse error" not in printed
