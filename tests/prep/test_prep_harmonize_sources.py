"""Three sources with different names, codes, units and date formats meet in one schema."""

from __future__ import annotations

import pandas as pd
import pytest

from fedsynth.prep import PrepSpec, run
from fedsynth.prep.spec import PrepSpecError
from fedsynth.schema import PrivacyRole, TableSchema

SOURCE_A = pd.DataFrame(
    {
        "pid": ["A1", "A2"],
        "fname": ["Anna", "Bo"],
        "lname": ["Berg", "Lind"],
        "dob": ["12/05/1980", "01/12/1999"],
        "gender": ["F", "M"],
        "weight_lb": ["154.3", "200"],
        "glucose_mgdl": ["90", "126"],
        "smokes": ["yes", "no"],
    }
)
SPEC_A = """
source: clinic_a
rename: {pid: patient_id, fname: first_name, lname: last_name, dob: birth_date,
         gender: sex, weight_lb: weight_kg, glucose_mgdl: glucose_mmol, smokes: smoker}
columns:
  birth_date: {date_formats: ["%d/%m/%Y"]}
  sex: {values: {F: female, M: male}}
  weight_kg: {unit: {from: lb, to: kg}}
  glucose_mmol: {unit: {from: mg/dL, to: mmol/L, substance: glucose}}
derive:
  - {name: age, expr: 'age(birth_date, "2024-01-01")'}
"""

SOURCE_B = pd.DataFrame(
    {
        "id": ["B7", "B8"],
        "given": ["Carl", "Dana"],
        "family": ["Holm", "Ek"],
        "birth": ["1975-03-02", "2010-07-30"],
        "sex_code": ["1", "2"],
        "mass_kg": ["81,5", "30"],
        "glu": ["5,4", "4,9"],
        "smoking": ["Y", "N"],
        "internal": ["x", "y"],
    }
)
SPEC_B = """
source: lab_b
rename: {id: patient_id, given: first_name, family: last_name, birth: birth_date,
         sex_code: sex, mass_kg: weight_kg, glu: glucose_mmol, smoking: smoker}
drop: [internal]
columns:
  sex: {values: {1: male, 2: female}}
  weight_kg: {decimal_comma: true}
  glucose_mmol: {decimal_comma: true}
derive:
  - {name: age, expr: 'age(birth_date, "2024-01-01")'}
"""

SOURCE_C = pd.DataFrame(
    {
        "record": ["C1", "C2"],
        "first": ["Eva", "Finn"],
        "last": ["Sand", "Dahl"],
        "born": ["19600229", "07/04/1990"],
        "sex": [" Female", "MALE "],
        "weight": ["60", "95.25"],
        "glucose": ["180.156", "72.0624"],
        "tobacco": ["TRUE", "false"],
        "years": ["64", "33"],
    }
)
SPEC_C = """
source: registry_c
rename: {record: patient_id, first: first_name, last: last_name, born: birth_date,
         weight: weight_kg, glucose: glucose_mmol, tobacco: smoker, years: age}
columns:
  birth_date: {date_formats: ["%Y%m%d", "%m/%d/%Y"]}
  sex: {case: lower}
  glucose_mmol: {unit: {from: mg/dL, to: mmol/L, substance: glucose}}
"""


def _prepare(raw: pd.DataFrame, spec_yaml: str, schema: TableSchema) -> pd.DataFrame:
    prepared, report = run(raw, PrepSpec.from_yaml(spec_yaml), schema)
    assert report.rows_out == len(raw), report
    return prepared


def test_three_sources_harmonize_into_exact_common_values(patients: TableSchema) -> None:
    frames = [
        _prepare(SOURCE_A, SPEC_A, patients),
        _prepare(SOURCE_B, SPEC_B, patients),
        _prepare(SOURCE_C, SPEC_C, patients),
    ]
    combined = pd.concat(frames, ignore_index=True)
    expected_columns = [
        c.name for c in patients.columns if c.role is not PrivacyRole.DIRECT_IDENTIFIER
    ]
    assert list(combined.columns) == expected_columns
    assert combined["birth_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "1980-05-12",
        "1999-12-01",
        "1975-03-02",
        "2010-07-30",
        "1960-02-29",
        "1990-07-04",
    ]
    assert combined["sex"].astype(str).tolist() == [
        "female",
        "male",
        "male",
        "female",
        "female",
        "male",
    ]
    assert combined["weight_kg"].tolist() == pytest.approx(
        [154.3 * 0.45359237, 200 * 0.45359237, 81.5, 30.0, 60.0, 95.25]
    )
    assert combined["glucose_mmol"].tolist() == pytest.approx(
        [90 / 18.0156, 126 / 18.0156, 5.4, 4.9, 10.0, 4.0]
    )
    assert combined["age"].tolist() == [43, 24, 48, 13, 64, 33]
    assert combined["smoker"].tolist() == [True, False, True, False, True, False]


def test_every_frame_has_the_common_dtypes(patients: TableSchema) -> None:
    frames = [
        _prepare(SOURCE_A, SPEC_A, patients),
        _prepare(SOURCE_B, SPEC_B, patients),
        _prepare(SOURCE_C, SPEC_C, patients),
    ]
    dtypes = {tuple(str(t) for t in f.dtypes) for f in frames}
    assert len(dtypes) == 1
    assert str(frames[0]["age"].dtype) == "Int64"
    assert str(frames[0]["birth_date"].dtype) == "datetime64[us]"


def test_schema_column_without_source_or_derivation_is_named(patients: TableSchema) -> None:
    spec = PrepSpec.from_yaml(SPEC_A.split("derive:")[0])
    with pytest.raises(PrepSpecError, match=r"schema columns \['age'\]"):
        run(SOURCE_A, spec, patients)


def test_renaming_a_column_the_source_lacks_is_named(patients: TableSchema) -> None:
    spec = PrepSpec.from_yaml("source: s\nrename: {nope: age}\n")
    with pytest.raises(PrepSpecError, match="nope"):
        run(SOURCE_A, spec, patients)


def test_derivation_reading_an_unknown_column_is_a_spec_error(patients: TableSchema) -> None:
    spec = PrepSpec.from_yaml(SPEC_A.replace("age(birth_date", "age(birthday"))
    with pytest.raises(PrepSpecError, match="birthday"):
        run(SOURCE_A, spec, patients)


@pytest.mark.parametrize("key", ["pid", "brith_date"])
def test_dedup_key_outside_the_common_schema_is_refused_naming_it(
    patients: TableSchema, key: str
) -> None:
    spec = PrepSpec.from_yaml(SPEC_A + f"dedup: {{keys: [last_name, {key}]}}\n")
    with pytest.raises(PrepSpecError, match=rf"dedup.keys \['{key}'\]") as refused:
        run(SOURCE_A, spec, patients)
    assert "birth_date" in str(refused.value)


def test_converted_numbers_are_rounded_to_the_schema_decimals() -> None:
    schema = TableSchema.from_yaml(
        "name: t\ncolumns:\n  - {name: height_cm, kind: numerical, decimals: 0}\n"
        "  - {name: weight_kg, kind: numerical, decimals: 1}\n"
    )
    spec = PrepSpec.from_yaml(
        "source: s\nrename: {h: height_cm, w: weight_kg}\n"
        "columns:\n  height_cm: {unit: {from: in, to: cm}}\n"
        "  weight_kg: {unit: {from: lb, to: kg}}\n"
    )
    prepared, report = run(pd.DataFrame({"h": ["66.5", ""], "w": ["154.3", "200"]}), spec, schema)
    assert prepared["height_cm"].tolist()[0] == 169.0 and pd.isna(prepared["height_cm"][1])
    assert prepared["weight_kg"].tolist() == [70.0, 90.7]
    assert {(r.rule, r.column, r.count) for r in report.rules if r.rule == "round"} == {
        ("round", "height_cm", 1),
        ("round", "weight_kg", 2),
    }
