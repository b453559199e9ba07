"""Reading options as people type them: delimiters, encodings, header names, Parquet shapes."""

from __future__ import annotations

import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.io import DataFileError, read_raw, read_table
from fedsynth.schema import NumericalColumn, TableSchema, TextColumn

TWO = TableSchema(name="t", columns=[NumericalColumn(name="a"), TextColumn(name="b")])
SPLITTING = [c for c in string.punctuation + " \t" if c != '"']


@settings(max_examples=60, deadline=None)
@given(delimiter=st.sampled_from([*SPLITTING, "\\t"]))
def test_any_single_ascii_delimiter_splits_records_as_written(
    delimiter: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    actual = "\t" if delimiter == "\\t" else delimiter
    path = tmp_path_factory.mktemp("delim") / "d.csv"
    path.write_text(f"a{actual}b\n1{actual}x\n2{actual}y\n")
    assert read_raw(path, delimiter=delimiter).column_names == ["a", "b"]
    df, report = read_table(path, TWO, delimiter=delimiter)
    assert report.clean and df["b"].tolist() == ["x", "y"]


@settings(max_examples=100, deadline=None)
@given(
    delimiter=st.one_of(
        st.text(min_size=2).filter(lambda d: d != "\\t"),
        st.characters(min_codepoint=128).map(str),
        st.sampled_from(['"', "\n", "\r"]),
    )
)
def test_a_delimiter_other_than_one_splitting_character_is_refused_naming_the_option(
    delimiter: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("delim") / "d.csv"
    path.write_text("a,b\n1,x\n")
    for read in (
        lambda: read_raw(path, delimiter=delimiter),
        lambda: read_table(path, TWO, delimiter=delimiter),
    ):
        with pytest.raises(DataFileError, match="--delimiter") as caught:
            read()
        assert caught.value.path == str(path) and repr(delimiter) in caught.value.problem


def test_an_unknown_encoding_is_refused_naming_the_option(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,x\n")
    for read in (
        lambda: read_raw(path, encoding="bogus"),
        lambda: read_table(path, TWO, encoding="bogus"),
    ):
        with pytest.raises(DataFileError, match=r"unknown text encoding 'bogus'.*--encoding"):
            read()


@pytest.mark.parametrize(("header", "positions"), [(",b", "1"), ("a,", "2"), (",b,", "1, 3")])
def test_a_header_with_an_unnamed_column_is_refused_naming_its_position(
    tmp_path: Path, header: str, positions: str
) -> None:
    path = tmp_path / "d.csv"
    path.write_text(f"{header}\n{','.join('1' * (header.count(',') + 1))}\n")
    with pytest.raises(
        DataFileError, match=f"column\\(s\\) {positions} \\(counting from 1\\) no name"
    ):
        read_raw(path)


@pytest.mark.parametrize(
    "values",
    [
        pa.array([[1, 2], [3]]),
        pa.array([{"x": 1}, {"x": 2}]),
        pa.array([[("k", 1)], [("k", 2)]], type=pa.map_(pa.string(), pa.int64())),
    ],
    ids=["list", "struct", "map"],
)
def test_a_nested_parquet_column_is_refused_naming_it(tmp_path: Path, values: pa.Array) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": values}), path)
    for read in (lambda: read_raw(path), lambda: read_table(path, TWO)):
        with pytest.raises(DataFileError, match="column 'b' holds nested values") as caught:
            read()
        assert "flatten 'b'" in caught.value.fix
