"""Schema inference proposes the right kinds, bounds and domains and flags identifiers."""

from __future__ import annotations

import warnings
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.io import DataFileNote, read_table
from fedsynth.schema import PrivacyRole
from fedsynth.schema_inference import infer_from_table, infer_schema
from fedsynth.validation import validate_column

FIRST = ["Anna", "Ben", "Carla", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
LAST = ["Meyer", "Smith", "Rossi", "Novak", "Berg", "Khan", "Silva", "Weber", "Lopez", "Dubois"]


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    n = 400
    people = [f"{FIRST[i % 10]} {LAST[(i * 7 + i // 10) % 10]}" for i in range(n)]
    df = pd.DataFrame(
        {
            "record_id": [f"R{100000 + i}" for i in range(n)],
            "patient_no": np.arange(5000, 5000 + n),
            "full_name": people,
            "email": [f"user{i}@example.org" for i in range(n)],
            "phone": [f"+44 20 7946 {i:04d}" for i in range(n)],
            "date_of_birth": [
                (datetime(1940, 1, 1) + pd.Timedelta(days=int(d))).strftime("%Y-%m-%d")
                for d in rng.integers(0, 365 * 60, n)
            ],
            "age": rng.integers(18, 94, n),
            "sex": rng.choice(["female", "male"], n),
            "weight_kg": np.round(rng.normal(75, 12, n), 1),
            "smoker": rng.choice(["yes", "no"], n),
            "admitted": [
                (datetime(2015, 3, 1) + pd.Timedelta(days=int(d))).strftime("%d/%m/%Y")
                for d in rng.integers(0, 2000, n)
            ],
            "postcode": rng.choice(["1010", "2020", "3030", "4040"], n),
            "diagnosis": rng.choice(["J45", "E11", "I10", None], n),
            "note": [f"visit note {i} " + "x" * (i % 5) for i in range(n)],
        }
    )
    path = tmp_path_factory.mktemp("infer") / "patients.csv"
    df.to_csv(path, index=False)
    return path


def test_inference_gives_kinds_bounds_domains_and_flags(mixed_csv: Path) -> None:
    schema, findings = infer_schema(mixed_csv)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "record_id": "identifier",
        "patient_no": "identifier",
        "full_name": "identifier",
        "email": "identifier",
        "phone": "identifier",
        "date_of_birth": "datetime",
        "age": "numerical",
        "sex": "categorical",
        "weight_kg": "numerical",
        "smoker": "boolean",
        "admitted": "datetime",
        "postcode": "categorical",
        "diagnosis": "categorical",
        "note": "text",
    }
    age = schema.column("age")
    assert (age.dtype, age.min, age.max) == ("int", 10.0, 100.0)
    weight = schema.column("weight_kg")
    assert weight.dtype == "float" and weight.decimals == 1
    assert weight.min <= 40 and weight.max >= 110 and weight.min % 10 == 0
    assert schema.column("sex").domain == ["female", "male"]
    assert schema.column("diagnosis").domain == ["E11", "I10", "J45"]
    assert schema.column("diagnosis").nullable and not schema.column("sex").nullable
    assert schema.column("admitted").format == "%d/%m/%Y"
    assert schema.column("admitted").min == datetime(2015, 1, 1)
    dob = schema.column("date_of_birth")
    assert dob.format == "%Y-%m-%d" and dob.role is PrivacyRole.QUASI_IDENTIFIER
    assert schema.column("postcode").role is PrivacyRole.QUASI_IDENTIFIER
    flagged = {f.column: f.message for f in findings}
    assert "email addresses" in flagged["email"] and "phone numbers" in flagged["phone"]
    assert "date of birth" in flagged["date_of_birth"]
    assert "person's name" in flagged["full_name"]
    assert "record key" in flagged["patient_no"]
    assert all(c.role is PrivacyRole.DIRECT_IDENTIFIER for c in schema.columns[:5])


def test_proposed_schema_accepts_the_file_it_came_from(mixed_csv: Path) -> None:
    schema, _ = infer_schema(mixed_csv)
    df, report = read_table(mixed_csv, schema)
    assert report.clean and len(df) == 400


def test_unique_strings_without_a_telling_name_are_flagged(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"token": [f"k{i * 7919 % 1000:03d}x" for i in range(60)]}).to_csv(
        path, index=False
    )
    schema, findings = infer_schema(path)
    assert schema.column("token").kind == "identifier"
    assert "every value is unique" in findings[0].message


def test_parquet_and_semicolon_csv_are_inferred_alike(tmp_path: Path, mixed_csv: Path) -> None:
    df = pd.read_csv(mixed_csv)
    df.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    from_csv, _ = infer_schema(mixed_csv)
    from_semi, _ = infer_schema(tmp_path / "semi.csv")
    assert from_semi.model_copy(update={"name": "patients"}) == from_csv
    df.to_parquet(tmp_path / "p.parquet")
    from_parquet, _ = infer_schema(tmp_path / "p.parquet")
    assert {c.name: c.kind for c in from_parquet.columns} == {
        c.name: c.kind for c in from_csv.columns
    }


def test_digits_with_leading_zeros_are_inferred_as_a_code_and_keep_their_zeros(
    tmp_path: Path,
) -> None:
    path = tmp_path / "areas.csv"
    path.write_text("area,n\n0123,1\n0999,2\n0500,3\n")
    schema, findings = infer_schema(path)
    area = schema.column("area")
    assert area.kind == "categorical" and area.domain == ["0123", "0500", "0999"]
    said = [f.message for f in findings if f.column == "area"]
    assert any("leading zeros (e.g. '0123')" in m for m in said)
    df, report = read_table(path, schema)
    assert report.clean and df["area"].astype(str).tolist() == ["0123", "0999", "0500"]


whole = st.integers(min_value=-(10**9), max_value=10**9)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(whole.map(str), min_size=0, max_size=30),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=4),
    st.sampled_from(["", "-", "+"]),
)
def test_any_leading_zero_keeps_a_digit_column_out_of_numbers(
    values: list[str], padded: int, zeros: int, sign: str
) -> None:
    column = [*values, f"{sign}{'0' * zeros}{padded}"]
    schema, findings = infer_from_table(pa.table({"value": column}), name="t")
    assert schema.column("value").kind != "numerical"
    assert any("leading zeros" in f.message for f in findings)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            whole.map(str),
            st.sampled_from(["0", "-0", "0.5", "-0.25", "0.0", "10", "100"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_zero_and_decimals_below_one_stay_numbers(values: list[str]) -> None:
    schema, findings = infer_from_table(pa.table({"amount": values}), name="t")
    assert schema.column("amount").kind == "numerical"
    assert not any("leading zeros" in f.message for f in findings)


def test_a_column_of_numbers_with_a_few_typos_says_so_instead_of_only_text() -> None:
    values = [str(90 + i % 90) for i in range(190)] + ["??", "n/a", "12O"] * 4
    schema, findings = infer_from_table(pa.table({"sbp": pa.array(values)}), name="t")
    said = " ".join(f.message for f in findings if f.column == "sbp")
    assert schema.column("sbp").kind == "text"
    assert "94% of the values are numbers" in said and "'12O', '??', 'n/a'" in said


def test_numbers_with_a_decimal_comma_point_at_the_prep_option() -> None:
    values = [f"{3 + i % 6},{i % 10}" for i in range(200)]
    _, findings = infer_from_table(pa.table({"glucose": pa.array(values)}), name="t")
    said = " ".join(f.message for f in findings if f.column == "glucose")
    assert "decimal comma (e.g. '3,0')" in said and "decimal_comma: true" in said


def test_digits_a_date_format_reads_as_year_zero_are_not_dates() -> None:
    schema, _ = infer_from_table(pa.table({"value": pa.array(["000021"])}), name="t")
    assert schema.column("value").kind == "categorical"


def test_a_unique_integer_record_key_is_flagged_once(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": range(1, 41), "age": [30 + i % 7 for i in range(40)]}).to_csv(
        path, index=False
    )
    schema, findings = infer_schema(path)
    notes = [f.message for f in findings if f.column == "id"]
    assert notes == [
        "likely direct identifier (unique whole numbers named like a record key): never modelled"
    ]
    column = schema.column("id")
    assert column.kind == "identifier" and column.description == notes[0]


def test_numbers_in_scientific_notation_get_no_decimals_that_round_them_to_zero() -> None:
    rng = np.random.default_rng(3)
    values = [f"{v:.3e}" for v in rng.lognormal(-20, 0.5, 200)]
    schema, _ = infer_from_table(pa.table({"dose": values}), name="t")
    dose = schema.column("dose")
    assert dose.kind == "numerical" and dose.dtype == "float" and dose.decimals is None


def test_decimals_are_the_values_precision_and_none_beyond_the_cap() -> None:
    table = pa.table(
        {
            "padded": ["1.50", "2.25", "3.000"],
            "fine": ["0.1234567", "0.5", "1.25"],
            "stored": pa.array([0.1, 2.5, 3.75], pa.float32()),
        }
    )
    schema, _ = infer_from_table(table, name="t")
    assert schema.column("padded").decimals == 2
    assert schema.column("fine").decimals is None
    assert schema.column("stored").decimals == 2


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(finite, min_size=1, max_size=20),
    st.sampled_from(["{!r}", "{:.3e}", "{:.2f}", "{:.9f}", "{:g}"]),
)
def test_proposed_decimals_never_change_a_value(values: list[float], pattern: str) -> None:
    texts = [pattern.format(v) for v in values]
    schema, _ = infer_from_table(pa.table({"x": texts}), name="t")
    column = schema.column("x")
    assert column.kind == "numerical"
    if column.decimals is not None:
        parsed = np.array([float(t) for t in texts])
        assert np.array_equal(np.round(parsed, column.decimals), parsed)


@pytest.mark.parametrize(
    ("rows", "bounds"),
    [(["1.7e308", "-1.7e308", "0"], (-1.7e308, 1.7e308)), (["1.7e308"] * 2, (1.7e308, 1.7e308))],
)
def test_numbers_near_the_largest_float_keep_their_own_bounds_with_a_note(
    tmp_path: Path, rows: list[str], bounds: tuple[float, float]
) -> None:
    path = tmp_path / "big.csv"
    path.write_text("x,y\n" + "".join(f"{v},{i}\n" for i, v in enumerate(rows)))
    schema, findings = infer_schema(path)
    x = schema.column("x")
    assert (x.kind, x.min, x.max) == ("numerical", *bounds)
    said = " ".join(f.message for f in findings if f.column == "x")
    assert "data's own extremes" in said and "replace them before sharing" in said
    assert read_table(path, schema)[1].clean


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=10))
def test_proposed_bounds_are_finite_and_hold_every_value(values: list[float]) -> None:
    schema, _ = infer_from_table(pa.table({"x": pa.array(values, pa.float64())}), name="t")
    column = schema.column("x")
    assert column.kind == "numerical"
    assert column.min <= min(values) and column.max >= max(values)
    assert not validate_column(pa.array(values, pa.float64()), column).codes.any()


def test_a_date_column_with_one_impossible_date_is_dates_not_phone_numbers(
    tmp_path: Path,
) -> None:
    days = [(datetime(2020, 1, 1) + pd.Timedelta(days=i)).strftime("%Y-%m-%d") for i in range(200)]
    path = tmp_path / "visits.csv"
    path.write_text("visit\n" + "\n".join([*days[:100], "2021-02-30", *days[100:]]) + "\n")
    schema, findings = infer_schema(path)
    assert schema.column("visit").kind == "datetime"
    said = " ".join(f.message for f in findings if f.column == "visit")
    assert "1 of 201 values are not dates" in said and "phone" not in said
    _, report = read_table(path, schema)
    assert (report.rows_accepted, report.rows_quarantined) == (200, 1)


calendar_day = st.dates(
    min_value=datetime(1900, 1, 1).date(), max_value=datetime(2100, 1, 1).date()
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(calendar_day, min_size=20, max_size=60),
    st.sampled_from(["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%y"]),
)
def test_date_shaped_digits_never_look_like_phone_numbers(days: list, fmt: str) -> None:
    texts = [d.strftime(fmt) for d in days]
    impossible = ["31.02.2020", "2020-02-30", "30/02/2020", "2020/13/45"] * 5
    _, findings = infer_from_table(pa.table({"seen": [*texts, *impossible]}), name="t")
    assert not any("phone numbers" in f.message for f in findings)


def test_domain_values_seen_fewer_than_five_times_are_flagged_for_review() -> None:
    values = ["A"] * 40 + ["B"] * 5 + ["C"] * 4 + ["rare-site"]
    schema, findings = infer_from_table(pa.table({"site": values}), name="t")
    assert schema.column("site").domain == ["A", "B", "C", "rare-site"]
    said = [f.message for f in findings if f.column == "site"]
    assert any(m.startswith("2 of the 4 domain values occur fewer than 5 times") for m in said)
    assert not any("rare-site" in m for m in said)


def test_common_domain_values_get_no_rare_value_note() -> None:
    _, findings = infer_from_table(pa.table({"ward": ["north", "south"] * 5}), name="t")
    assert findings == []


@pytest.mark.parametrize("distinct", [10, 80])
def test_nan_in_a_float_parquet_column_is_missing_not_a_category(
    tmp_path: Path, distinct: int
) -> None:
    weights = [60.5 + i % distinct for i in range(200)] + [float("nan")] * 5
    path = tmp_path / "w.parquet"
    pq.write_table(pa.table({"weight": pa.array(weights, from_pandas=False)}), path)
    schema, findings = infer_schema(path)
    weight = schema.column("weight")
    assert (weight.kind, weight.dtype, weight.nullable) == ("numerical", "float", True)
    assert weight.min <= 60.5 and weight.max >= 60.5 + distinct - 1
    assert any(f.message.startswith("5 values are NaN") for f in findings)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(finite, st.just(float("nan"))), min_size=1, max_size=30))
def test_stored_floats_with_nan_are_never_proposed_as_categories(values: list[float]) -> None:
    column = pa.array(values, pa.float64(), from_pandas=False)
    schema, _ = infer_from_table(pa.table({"x": column}), name="t")
    assert schema.column("x").kind in {"numerical", "text"}
    if not all(np.isnan(values)):
        assert schema.column("x").kind == "numerical"


def test_numbers_with_a_decimal_comma_are_proposed_as_numbers() -> None:
    values = [f"{3 + i % 6},{i % 10}" for i in range(40)]
    schema, findings = infer_from_table(pa.table({"glucose": pa.array(values)}), name="t")
    glucose = schema.column("glucose")
    assert (glucose.kind, glucose.dtype, glucose.min, glucose.max) == ("numerical", "float", 3, 9)
    assert glucose.decimals == 1
    assert any("decimal_comma: true" in f.message for f in findings)


def test_a_share_just_under_all_numbers_is_not_rounded_up_to_100_percent() -> None:
    values = [str(i % 300) for i in range(1998)] + ["??", "n/a"]
    _, findings = infer_from_table(pa.table({"sbp": pa.array(values)}), name="t")
    said = " ".join(f.message for f in findings if f.column == "sbp")
    assert "99% of the values are numbers" in said


def test_dates_without_a_time_get_a_day_format_so_models_give_whole_days(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("day,moment\n2000-01-01,2000-01-01 10:30:00\n2000-03-05,2000-03-05T08:00\n")
    schema, _ = infer_schema(path)
    day, moment = schema.column("day"), schema.column("moment")
    assert (day.format, day.whole_days) == ("%Y-%m-%d", True)
    assert (moment.format, moment.whole_days) == (None, False)
    assert read_table(path, schema)[1].clean
    stored = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "day": pa.array([date(2000, 1, 1), date(2001, 6, 2)], pa.date32()),
                "moment": pa.array(
                    [datetime(2000, 1, 1), datetime(2001, 6, 2)], pa.timestamp("us")
                ),
            }
        ),
        stored,
    )
    schema, _ = infer_schema(stored)
    assert schema.column("day").whole_days and not schema.column("moment").whole_days
    assert read_table(stored, schema)[1].clean


@settings(max_examples=100, deadline=None)
@given(st.lists(calendar_day, min_size=1, max_size=20), st.booleans())
def test_a_day_format_is_proposed_only_for_dates_without_a_time(
    days: list[date], timed: bool
) -> None:
    texts = [f"{d.isoformat()} 12:00:00" if timed else d.isoformat() for d in days]
    schema, _ = infer_from_table(pa.table({"when": texts}), name="t")
    column = schema.column("when")
    assert column.kind == "datetime" and column.whole_days is not timed
    assert not validate_column(pa.array(texts), column).codes.any()


@pytest.mark.parametrize(
    ("sample_rows", "said"),
    [
        (None, "2 rows with the wrong number of fields were left out"),
        (2, "1 row with the wrong number of fields was left out"),
    ],
)
def test_rows_with_the_wrong_number_of_fields_are_counted_in_a_note(
    tmp_path: Path, sample_rows: int | None, said: str
) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,x\n2,y,extra\n3,z\n4\n5,w\n")
    with pytest.warns(DataFileNote, match=said):
        schema, _ = infer_schema(path, sample_rows=sample_rows)
    assert schema.names == ["a", "b"]


def test_a_well_formed_csv_gives_no_note_about_left_out_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataFileNote)
        infer_schema(path)


def test_widened_bounds_are_round_numbers_without_float_noise() -> None:
    schema, findings = infer_from_table(pa.table({"x": ["1.5", "2.25"]}), name="t")
    assert (schema.column("x").min, schema.column("x").max) == (1.5, 2.3)
    assert "bounds widened from the data to [1.5, 2.3]" in findings[0].message
