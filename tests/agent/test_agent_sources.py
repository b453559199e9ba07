"""What the agent reads from its sources reaches preparation unchanged, and the rows preparation
rejects are kept at the site with their reasons."""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fedsynth.jobs import JobSpec
from fedsynth.prep.source import rejected_rows
from supplier_agent.config import AgentConfig, FileSource, SqlSource
from supplier_agent.sources import read_source
from supplier_agent.tasks import TaskContext, TaskPayload

BIG = 12345678901234567
"""Above 2**53: a float cannot hold it, so a reader that goes through floats changes it."""


def test_sql_integers_with_a_null_keep_every_digit(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "clinic.db") as db:
        db.execute("CREATE TABLE p (nid INTEGER, seen TIMESTAMP, amount REAL)")
        db.executemany(
            "INSERT INTO p VALUES (?, ?, ?)",
            [(BIG, "2024-01-02 03:04:05", 2.0), (None, None, None), (3, "2024-01-02", 1.5)],
        )
    source = SqlSource(
        kind="sql", url=f"sqlite:///{tmp_path / 'clinic.db'}", query="SELECT * FROM p"
    )
    rows = read_source(source).to_dict("records")
    assert [r["nid"] for r in rows] == [str(BIG), None, "3"]
    assert [r["amount"] for r in rows] == ["2", None, "1.5"]


def test_parquet_integers_dates_and_times_read_as_a_person_writes_them(tmp_path: Path) -> None:
    table = pa.table(
        {
            "nid": pa.array([BIG, None, 3]),
            "born": pa.array([dt.date(1980, 5, 17), None, dt.date(1990, 1, 1)]),
            "seen": pa.array([dt.datetime(2024, 1, 2), None, dt.datetime(2024, 1, 2, 3, 4, 5)]),
            "smoker": pa.array([True, None, False]),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    rows = read_source(FileSource(kind="file", path=tmp_path / "rows.parquet")).to_dict("records")
    assert rows[0] == {
        "nid": str(BIG),
        "born": "1980-05-17",
        "seen": "2024-01-02",
        "smoker": "true",
    }
    assert set(rows[1].values()) == {None}
    assert rows[2]["seen"] == "2024-01-02 03:04:05"


def no_fetch(sha256: str, path: Path) -> Path:
    raise AssertionError("preparing rows fetches nothing from the broker")


def test_rows_preparation_rejects_are_written_at_the_site_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("age,sex\n40,F\nforty,M\n51,X\n")
    (tmp_path / "agent.yaml").write_text(
        "name: hospital-a\nbroker: 127.0.0.1:7443\n"
        "tls: {ca: pki/ca.pem, cert: pki/a.pem, key: pki/a.key}\nstate_dir: state\n"
        "sources:\n  patients: {kind: file, path: rows.csv}\n"
    )
    config = AgentConfig.load(tmp_path / "agent.yaml")
    job = JobSpec.model_validate(
        {
            "name": "j",
            "topology": "prepared",
            "suppliers": [{"supplier": "hospital-a", "source": "patients"}],
            "schema": {
                "name": "patients",
                "columns": [
                    {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
                    {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
                ],
            },
            "synthesizer": {"name": "copula"},
            "rows": 10,
        }
    )
    payload = TaskPayload(job=job, rows=0)
    ctx = TaskContext(config, "job-1", "job-1.0.hospital-a", payload, tmp_path, no_fetch)
    assert ctx.prepared_rows()["age"].tolist() == [40]
    with open(ctx.quarantine_path, newline="") as fh:
        entries = list(csv.DictReader(fh))
    assert [(e["source_row"], e["column"], e["value"]) for e in entries] == [
        ("2", "age", "forty"),
        ("3", "sex", "X"),
    ]
    assert all(e["reason"] for e in entries)
    assert ctx.quarantine_path.is_relative_to(config.state_dir)


def test_lines_that_are_not_records_are_quarantined_at_their_row_as_prep_run_does(
    tmp_path: Path,
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("age;sex\n40;F\n\n51;M;extra\n33;M\n")
    rows = read_source(FileSource(kind="file", path=source))
    assert rows.to_dict("list") == {"age": ["40", "33"], "sex": ["F", "M"]}
    assert [(e.source_row, e.rule) for e in rejected_rows(rows)] == [
        (2, "blank_row"),
        (3, "field_count"),
    ]
