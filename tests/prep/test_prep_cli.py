"""End to end through the CLI: prepare two sources with tokens, then link them at the 'broker'."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from fedsynth.prep.cli import app, link
from fedsynth.prep.population import two_sources
from fedsynth.prep.tokens import SECRET_ENV, SECRET_FILE_ENV

SECRET = "cli-test-secret-0123456789abcdef"
SCHEMA = """
name: people
columns:
  - {name: first_name, kind: identifier}
  - {name: middle_name, kind: identifier}
  - {name: last_name, kind: identifier}
  - {name: sex, kind: categorical, domain: [female, male]}
  - {name: birth_date, kind: datetime, role: quasi_identifier}
  - {name: score, kind: numerical}
"""
SPEC = """
source: {source}
rename: {{given: first_name, family: last_name}}
drop: [person_id, postcode]
columns:
  sex: {{values: {{F: female, M: male}}}}
linkage:
  fields:
    - {{column: first_name, bloom_hashes: 15, group: name}}
    - {{column: middle_name, bloom_hashes: 4, group: name}}
    - {{column: last_name, bloom_hashes: 15, group: name}}
    - {{column: birth_date, bloom_hashes: 25, normalize: [digits_only]}}
  exact_key: [first_name, last_name, birth_date]
  blocking:
    - {{name: dob, parts: [{{column: birth_date}}]}}
    - name: names
      sorted: true
      parts: [{{column: first_name, transform: soundex}}, {{column: last_name, transform: soundex}}]
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    a, b = two_sources(300, overlap=0.6, seed=3)
    for name, frame in (("a", a), ("b", b)):
        frame = frame.rename(columns={"first_name": "given", "last_name": "family"})
        frame["score"] = [str(i % 7) for i in range(len(frame))]
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        (tmp_path / f"{name}.yaml").write_text(SPEC.format(source=name))
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    key = tmp_path / "linkage.key"
    key.write_text(SECRET)
    key.chmod(0o600)
    return tmp_path


def _prep(workdir: Path, name: str, *extra: str):
    return CliRunner().invoke(
        app,
        [
            "run",
            str(workdir / f"{name}.csv"),
            "--spec",
            str(workdir / f"{name}.yaml"),
            "--schema",
            str(workdir / "schema.yaml"),
            "--out",
            str(workdir / f"{name}.parquet"),
            "--quarantine",
            str(workdir / f"{name}.q.csv"),
            "--report",
            str(workdir / f"{name}.report.json"),
            *extra,
        ],
    )


def test_prepare_then_link_leaves_only_tokens_and_links_people(workdir: Path) -> None:
    for name in ("a", "b"):
        result = _prep(workdir, name, "--secret-file", str(workdir / "linkage.key"))
        assert result.exit_code == 0, result.output
        prepared = pd.read_parquet(workdir / f"{name}.parquet")
        assert not {"first_name", "middle_name", "last_name"} & set(prepared.columns)
        assert {"tok_record", "bf_record", "blk_dob", "blk_names"} <= set(prepared.columns)
        report = json.loads((workdir / f"{name}.report.json").read_text())
        assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
        assert (workdir / f"{name}.q.csv").read_text().startswith("source_row,column")
    linker = typer.Typer()
    linker.command()(link)
    result = CliRunner().invoke(
        linker,
        [
            "--left",
            str(workdir / "a.parquet"),
            "--right",
            str(workdir / "b.parquet"),
            "--out",
            str(workdir / "linked.parquet"),
            "--stacked",
            str(workdir / "stacked.parquet"),
            "--report",
            str(workdir / "link.json"),
            "--threshold",
            "0.8",
        ],
    )
    assert result.exit_code == 0, result.output
    linked = pd.read_parquet(workdir / "linked.parquet")
    report = json.loads((workdir / "link.json").read_text())
    assert len(linked) == report["matches"] > 0
    assert {"score_a", "score_b", "birth_date_a", "link_score"} <= set(linked.columns)
    stacked = pd.read_parquet(workdir / "stacked.parquet")
    assert len(stacked) == report["left_rows"] + report["right_rows"]
    assert stacked["person_id"].nunique() == len(stacked) - report["matches"]
    for path in workdir.iterdir():
        if path.name != "linkage.key":
            assert SECRET.encode() not in path.read_bytes()
    assert SECRET not in result.output


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("empty", ["a", "b"])
def test_linking_with_a_source_of_no_rows_links_no_one(workdir: Path, empty: str) -> None:
    source = workdir / f"{empty}.csv"
    source.write_text(source.read_text().splitlines()[0] + "\n")
    for name in ("a", "b"):
        result = _prep(workdir, name, "--secret-file", str(workdir / "linkage.key"))
        assert result.exit_code == 0, result.output
    linker = typer.Typer()
    linker.command()(link)
    outputs = {f"--{o}": str(workdir / f"{o}.out") for o in ("out", "stacked", "report")}
    paths = ["--left", str(workdir / "a.parquet"), "--right", str(workdir / "b.parquet")]
    result = CliRunner().invoke(linker, [*paths, *(x for kv in outputs.items() for x in kv)])
    assert result.exit_code == 0, result.output
    assert "0 matches" in result.output
    report = json.loads((workdir / "report.out").read_text())
    rows = report["left_rows"] + report["right_rows"]
    assert report["matches"] == 0 and rows > 0
    assert report["unmatched_left"] + report["unmatched_right"] == rows
    assert len(pd.read_parquet(workdir / "out.out")) == 0
    assert len(pd.read_parquet(workdir / "stacked.out")) == rows


def test_linkage_spec_without_a_secret_is_refused(workdir: Path) -> None:
    result = _prep(workdir, "a")
    assert result.exit_code == 2
    assert "--secret-file" in result.output
    assert not (workdir / "a.parquet").exists()


def test_secret_file_readable_by_others_is_refused_by_the_cli(workdir: Path) -> None:
    (workdir / "linkage.key").chmod(0o644)
    result = _prep(workdir, "a", "--secret-file", str(workdir / "linkage.key"))
    assert result.exit_code == 2
    assert "chmod 600" in result.output


def test_bad_spec_is_reported_with_file_and_field(workdir: Path) -> None:
    (workdir / "a.yaml").write_text("source: a\ncolumns: {sex: {case: sideways}}\n")
    result = _prep(workdir, "a")
    assert result.exit_code == 2
    assert "a.yaml" in result.output and "columns.sex.case" in result.output


def test_prepared_rows_fit_with_the_schema_prep_run_writes_for_them(workdir: Path) -> None:
    from fedsynth.cli import app as fedsynth_app

    secret = ("--secret-file", str(workdir / "linkage.key"))
    prepared_schema = workdir / "a.prepared.yaml"
    result = _prep(workdir, "a", *secret, "--schema-out", str(prepared_schema))
    assert result.exit_code == 0, result.output
    fit = ["synth", "fit", str(workdir / "a.parquet"), "--out", str(workdir / "m.fsm")]
    refused = CliRunner().invoke(fedsynth_app, [*fit, "--schema", str(workdir / "schema.yaml")])
    assert refused.exit_code == 2 and "unexpected column" in refused.output
    fitted = CliRunner().invoke(fedsynth_app, [*fit, "--schema", str(prepared_schema)])
    assert fitted.exit_code == 0, fitted.output
    assert (workdir / "m.fsm").exists()


def test_run_summary_counts_the_cells_missing_tokens_nulled_per_column(workdir: Path) -> None:
    frame = pd.read_csv(workdir / "a.csv", dtype=str)
    frame.loc[:2, "score"] = "NA"
    frame.loc[3, "sex"] = "?"
    frame.to_csv(workdir / "a.csv", index=False)
    result = _prep(workdir, "a", "--secret-file", str(workdir / "linkage.key"))
    assert result.exit_code == 0, result.output
    assert "cells read as null for a missing token (the spec's 'missing'): " in result.output
    assert "score 3" in result.output and "sex 1" in result.output
