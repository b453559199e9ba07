"""Validated reading: typed rows out, every bad row quarantined with reasons, bad files refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsynth import io as fio
from fedsynth.io import DataFileError, read_table, validate_file
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    TableSchema,
    TextColumn,
)

SCHEMA = TableSchema(
    name="patients",
    columns=[
        IdentifierColumn(name="id", nullable=False),
        NumericalColumn(name="age", dtype="int", min=0, max=120, nullable=False),
        CategoricalColumn(name="sex", domain=["F", "M"]),
        NumericalColumn(name="weight", min=1, max=400),
        BooleanColumn(name="smoker"),
        DatetimeColumn(name="admitted", format="%d/%m/%Y", min="2000-01-01"),
        TextColumn(name="note"),
    ],
)
HEADER = "id,age,sex,weight,smoker,admitted,note\n"
GOOD = [
    "p1,34,F,61.5,yes,03/02/2020,ok",
    "p2,0,M,3.2,no,31/12/2019,",
    'p3,120,,80,,01/01/2000,"quoted, with comma"',
]


def write(tmp_path: Path, body: str, name: str = "data.csv", raw: bytes | None = None) -> Path:
    path = tmp_path / name
    path.write_bytes(raw if raw is not None else body.encode("utf-8"))
    return path


def quarantine_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_clean_file_reads_into_the_typed_frame(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\n".join(GOOD) + "\n")
    df, report = read_table(path, SCHEMA)
    assert report.clean and report.rows_in == report.rows_accepted == 3
    assert df["age"].dtype == "Int64" and df["age"].tolist() == [34, 0, 120]
    assert list(df["sex"].cat.categories) == ["F", "M"] and pd.isna(df["sex"][2])
    assert df["weight"].dtype == "float64"
    assert df["smoker"].dtype == "boolean" and df["smoker"].tolist()[:2] == [True, False]
    assert str(df["admitted"].dtype).startswith("datetime64")
    assert df["admitted"][0] == pd.Timestamp("2020-02-03")
    assert df["note"].tolist()[2] == "quoted, with comma"
    assert df["id"].dtype == "string"


BAD_CASES = [
    ("p4,abc,F,60,yes,01/01/2020,", "age", "type", "not a number"),
    ("p5,34.5,F,60,yes,01/01/2020,", "age", "not_integer", "whole number"),
    ("p6,121,F,60,yes,01/01/2020,", "age", "maximum", "above the maximum 120"),
    ("p7,-1,F,60,yes,01/01/2020,", "age", "minimum", "below the minimum 0"),
    ("p8,40,X,60,yes,01/01/2020,", "sex", "domain", "not one of the declared categories"),
    ("p9,40,F,inf,yes,01/01/2020,", "weight", "not_finite", "finite"),
    ("p10,40,F,60,maybe,01/01/2020,", "smoker", "type", "not a boolean"),
    ("p11,40,F,60,yes,2020-01-01,", "admitted", "type", "format %d/%m/%Y"),
    ("p12,40,F,60,yes,31/12/1999,", "admitted", "minimum", "below the minimum"),
    ("p13,,F,60,yes,01/01/2020,", "age", "not_null", "does not allow nulls"),
]


@pytest.mark.parametrize(("line", "column", "rule", "words"), BAD_CASES)
def test_each_broken_rule_quarantines_the_row_with_its_reason(
    tmp_path: Path, line: str, column: str, rule: str, words: str
) -> None:
    path = write(tmp_path, HEADER + "\n".join([*GOOD, line]) + "\n")
    q = tmp_path / "q.csv"
    df, report = read_table(path, SCHEMA, quarantine=q)
    assert len(df) == 3 and report.rows_quarantined == 1 and report.rows_in == 4
    rows = quarantine_rows(q)
    assert rows["_row"].tolist() == ["4"]
    reasons = json.loads(rows["_reasons"][0])
    assert [(r["column"], r["rule"]) for r in reasons] == [(column, rule)]
    assert words in reasons[0]["message"]
    assert rows.drop(columns=["_row", "_reasons"]).iloc[0].tolist() == line.split(",")
    assert report.issues_by_column == {column: {rule: 1}}
    assert report.examples[0].row == 4


def test_one_reason_per_offending_cell_and_exactly_the_bad_rows(tmp_path: Path) -> None:
    lines = [
        GOOD[0],
        "p4,200,X,60,yes,01/01/2020,",
        GOOD[1],
        "p5,40,F,60,yes,01/01/2020,too,many",
        "p6,40",
        GOOD[2],
        "",
        "p7,-3,F,0.5,perhaps,bad,",
    ]
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")
    q = tmp_path / "q.csv"
    df, report = read_table(path, SCHEMA, quarantine=q)
    assert df["id"].tolist() == ["p1", "p2", "p3"]
    rows = quarantine_rows(q)
    assert rows["_row"].astype(int).tolist() == [2, 4, 5, 7, 8]
    reasons = {int(r): json.loads(x) for r, x in zip(rows["_row"], rows["_reasons"], strict=True)}
    assert [(i["column"], i["rule"]) for i in reasons[2]] == [("age", "maximum"), ("sex", "domain")]
    assert reasons[4][0]["rule"] == "field_count" and reasons[4][0]["value"].endswith("too,many")
    assert "has 8 field(s) where the header has 7" in reasons[4][0]["message"]
    assert reasons[5][0]["rule"] == "field_count"
    assert reasons[7][0]["rule"] == "blank_row"
    assert [i["rule"] for i in reasons[8]] == ["minimum", "minimum", "type", "type"]
    assert report.rows_in == 8 == report.rows_accepted + report.rows_quarantined


def test_padded_cells_are_trimmed_and_whitespace_only_cells_are_empty(tmp_path: Path) -> None:
    schema = TableSchema(
        name="padded",
        columns=[
            NumericalColumn(name="i", dtype="int"),
            CategoricalColumn(name="c", domain=["a", "b"]),
            BooleanColumn(name="b"),
            DatetimeColumn(name="d"),
            DatetimeColumn(name="f", format="%d/%m/%Y"),
            TextColumn(name="t", nullable=False),
        ],
    )
    body = (
        "i,c,b,d,f,t\n"
        " 2 , a , yes , 2020-01-02 , 03/02/2020 , kept \n"
        "  ,  ,  ,  ,  ,  \n"
        "3,  , no ,  ,  , x\n"
    )
    q = tmp_path / "q.csv"
    df, report = read_table(write(tmp_path, body), schema, quarantine=q)
    assert df["i"].tolist() == [2, 3] and df["c"].tolist()[0] == "a"
    assert df["b"].tolist() == [True, False] and df["d"][0] == pd.Timestamp("2020-01-02")
    assert df["f"][0] == pd.Timestamp("2020-02-03") and df["t"].tolist() == [" kept ", " x"]
    assert pd.isna(df["c"][1]) and pd.isna(df["d"][1]) and pd.isna(df["f"][1])
    reasons = json.loads(quarantine_rows(q)["_reasons"][0])
    assert [r["rule"] for r in reasons] == ["blank_row"] and report.rows_quarantined == 1


def test_whitespace_only_cell_in_a_column_without_nulls_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "p1,   ,F,60,yes,01/01/2020,\n")
    q = tmp_path / "q.csv"
    read_table(path, SCHEMA, quarantine=q)
    reasons = json.loads(quarantine_rows(q)["_reasons"][0])
    assert [(r["column"], r["rule"]) for r in reasons] == [("age", "not_null")]


def test_missing_and_unexpected_columns_are_named_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "id,age,sex,weight,smoker,admitted,comment\np1,1,F,2,yes,01/01/2020,x\n")
    with pytest.raises(DataFileError) as err:
        read_table(path, SCHEMA)
    message = str(err.value)
    assert str(path) in message
    assert "missing column(s) ['note']" in message and "unexpected column(s) ['comment']" in message
    assert "Fix:" in message and "rename the header" in message


def test_empty_file_is_refused(tmp_path: Path) -> None:
    for body in ("", "\n\n  \n"):
        path = write(tmp_path, body)
        with pytest.raises(DataFileError, match=r"data.csv: the file is empty\. Fix: export"):
            read_table(path, SCHEMA)


def test_header_only_file_is_an_empty_table(tmp_path: Path) -> None:
    df, report = read_table(write(tmp_path, HEADER), SCHEMA)
    assert len(df) == 0 and report.rows_in == 0 and list(df.columns) == SCHEMA.names


def test_a_utf8_byte_order_mark_is_skipped_and_a_utf16_one_refused(tmp_path: Path) -> None:
    body = HEADER + GOOD[0] + "\n"
    path = write(tmp_path, "", raw=b"\xef\xbb\xbf" + body.encode())
    for encoding in ("utf-8", "utf-8-sig"):
        df, _ = read_table(path, SCHEMA, encoding=encoding)
        assert df["id"].tolist() == ["p1"]
    with pytest.raises(DataFileError, match=r"UTF-8 byte-order mark .*--encoding utf-8"):
        read_table(path, SCHEMA, encoding="cp1252")
    utf16 = write(tmp_path, "", name="u16.csv", raw=body.encode("utf-16"))
    with pytest.raises(DataFileError, match=r"UTF-16 LE byte-order mark.*iconv"):
        read_table(utf16, SCHEMA)


def test_other_delimiter_than_declared_is_named_and_an_undeclared_one_sniffed(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, HEADER.replace(",", ";") + GOOD[0].replace(",", ";") + "\n")
    with pytest.raises(DataFileError, match=r"delimited by ';', not the declared ','.*--delimiter"):
        read_table(path, SCHEMA, delimiter=",")
    for delimiter in (";", None):
        df, report = read_table(path, SCHEMA, delimiter=delimiter)
        assert report.clean and df["age"].tolist() == [34]


def test_undecodable_bytes_name_the_line_and_leave_no_output(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fio, "BLOCK_SIZE", 64)
    lines = [f"p{i},{i % 90},F,60,yes,01/01/2020,ok" for i in range(40)]
    lines[30] = "p30,30,F,60,yes,01/01/2020,caf\xe9"
    path = write(tmp_path, "", raw=(HEADER + "\n".join(lines) + "\n").encode("latin-1"))
    q, out = tmp_path / "q.csv", tmp_path / "out.parquet"
    with pytest.raises(DataFileError, match=r"not valid utf-8 at line 32.*iconv"):
        validate_file(path, SCHEMA, quarantine=q, out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]
    report = validate_file(path, SCHEMA, quarantine=q, out=out, encoding="latin-1")
    assert report.clean and pq.read_table(out).column("note")[30].as_py() == "café"


def test_header_with_undecodable_bytes_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "", raw=b"id,\xffage\n1,2\n")
    with pytest.raises(DataFileError, match="not valid utf-8 at line 1"):
        read_table(path, SCHEMA)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"nope.csv: file not found"):
        read_table(tmp_path / "nope.csv", SCHEMA)


def test_small_blocks_give_the_same_result_and_row_numbers(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    lines = []
    for i in range(500):
        age = str(rng.integers(0, 120)) if rng.random() > 0.05 else "x"
        tail = ",extra" if rng.random() < 0.02 else ""
        lines.append(f"p{i},{age},F,60,yes,01/01/2020,n{tail}")
    path = write(tmp_path, HEADER + "\n".join(lines))
    whole_df, whole = read_table(path, SCHEMA, quarantine=tmp_path / "q1.csv")
    monkeypatch.setattr(fio, "BLOCK_SIZE", 97)
    small_df, small = read_table(path, SCHEMA, quarantine=tmp_path / "q2.csv")
    pd.testing.assert_frame_equal(whole_df, small_df)
    assert whole.model_dump() | {"quarantine": None} == small.model_dump() | {"quarantine": None}
    expected_bad = [i + 1 for i, line in enumerate(lines) if ",x," in line or "extra" in line]
    assert quarantine_rows(tmp_path / "q2.csv")["_row"].astype(int).tolist() == expected_bad


def test_parquet_input_is_validated_by_stored_type(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "age": [1.0, 2.5, 130.0, None],
            "sex": pa.array(["F", "M", "F", "Z"]).dictionary_encode(),
            "weight": pa.array([10, 20, 30, 40], pa.int32()),
            "smoker": [True, False, None, True],
            "admitted": pa.array([pd.Timestamp("2020-01-01")] * 4, pa.timestamp("ms")),
            "note": [None, "x", "y", "z"],
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    q = tmp_path / "q.csv"
    df, _ = read_table(path, SCHEMA, quarantine=q)
    assert df["id"].tolist() == ["a"] and df["age"].tolist() == [1]
    rules = {
        int(r): [i["rule"] for i in json.loads(x)]
        for r, x in zip(quarantine_rows(q)["_row"], quarantine_rows(q)["_reasons"], strict=True)
    }
    assert rules == {2: ["not_integer"], 3: ["maximum"], 4: ["not_null", "domain"]}


def test_parquet_column_of_an_impossible_type_is_refused(tmp_path: Path) -> None:
    table = pa.table({n: pa.array(["1"]) for n in SCHEMA.names})
    table = table.set_column(1, "age", pa.array([pd.Timestamp("2020-01-01")]))
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataFileError, match="column 'age' is stored as timestamp"):
        read_table(path, SCHEMA)


def test_validate_file_writes_accepted_rows_and_quarantine(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\n".join([*GOOD, "p9,999,F,1,no,01/01/2020,"]) + "\n")
    for name in ("out.parquet", "out.csv"):
        out, q = tmp_path / name, tmp_path / f"q-{name}.csv"
        report = validate_file(path, SCHEMA, quarantine=q, out=out)
        assert report.rows_accepted == 3 and report.quarantine == str(q)
        written = pq.read_table(out).to_pandas() if name.endswith("parquet") else pd.read_csv(out)
        assert written["id"].tolist() == ["p1", "p2", "p3"]
        assert quarantine_rows(q)["_row"].tolist() == ["4"]


def test_quarantine_file_exists_with_header_when_nothing_was_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD[0] + "\n")
    q = tmp_path / "q.csv"
    report = validate_file(path, SCHEMA, quarantine=q)
    assert report.clean
    assert q.read_text().splitlines() == [
        '"_row","_reasons",' + ",".join(f'"{n}"' for n in SCHEMA.names)
    ]
