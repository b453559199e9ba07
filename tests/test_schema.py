"""The schema document: validation of what people write, and lossless YAML/JSON round trips."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    PrivacyRole,
    SchemaError,
    TableSchema,
    TextColumn,
)

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
ROLES = st.sampled_from([PrivacyRole.QUASI_IDENTIFIER, PrivacyRole.SENSITIVE, PrivacyRole.OTHER])
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
MOMENTS = st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1))
TEXTS = st.text(min_size=1, max_size=8)


@st.composite
def columns(draw: st.DrawFn, name: str):
    kind = draw(st.sampled_from(["num", "cat", "bool", "dt", "id", "text"]))
    common = {"name": name, "nullable": draw(st.booleans())}
    if kind == "id":
        return IdentifierColumn(**common)
    common["role"] = draw(ROLES)
    common["description"] = draw(st.none() | st.text(max_size=20))
    if kind == "num":
        low, high = sorted([draw(FLOATS), draw(FLOATS)])
        return NumericalColumn(
            dtype=draw(st.sampled_from(["int", "float"])),
            min=draw(st.none() | st.just(low)),
            max=draw(st.none() | st.just(high)),
            decimals=draw(st.none() | st.integers(0, 15)),
            **common,
        )
    if kind == "cat":
        return CategoricalColumn(domain=draw(st.lists(TEXTS, min_size=1, unique=True)), **common)
    if kind == "bool":
        return BooleanColumn(**common)
    if kind == "dt":
        low, high = sorted([draw(MOMENTS), draw(MOMENTS)])
        fmt = draw(st.sampled_from([None, "%Y-%m-%d", "%d/%m/%Y %H:%M"]))
        return DatetimeColumn(format=fmt, min=low, max=high, **common)
    return TextColumn(**common)


@st.composite
def schemas(draw: st.DrawFn) -> TableSchema:
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    return TableSchema(name=draw(NAMES), columns=[draw(columns(n)) for n in names])


@settings(max_examples=150, deadline=None)
@given(schema=schemas())
def test_yaml_round_trip_is_lossless(schema: TableSchema) -> None:
    assert TableSchema.from_yaml(schema.to_yaml()) == schema


@settings(max_examples=50, deadline=None)
@given(schema=schemas())
def test_json_file_round_trip_is_lossless(schema: TableSchema, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("s") / "schema.json"
    schema.save(path)
    assert TableSchema.load(path) == schema
    assert json.loads(path.read_text())["columns"][0]["kind"] == schema.columns[0].kind


def test_yaml_file_round_trip_keeps_every_field(tmp_path) -> None:
    schema = TableSchema(
        name="patients",
        columns=[
            IdentifierColumn(name="mrn"),
            NumericalColumn(
                name="age", dtype="int", min=0, max=120, role="quasi_identifier", unit="years"
            ),
            CategoricalColumn(name="code", domain=[1, 2, "yes"]),
            DatetimeColumn(name="admitted", format="%d/%m/%Y", min="2000-01-01"),
            BooleanColumn(name="smoker", true_values=["J"], false_values=["N"], nullable=False),
            TextColumn(name="note", description="free text"),
        ],
    )
    path = tmp_path / "schema.yaml"
    schema.save(path)
    loaded = TableSchema.load(path)
    assert loaded == schema
    assert loaded.column("code").domain == ["1", "2", "yes"]
    assert loaded.column("age").unit == "years"
    assert loaded.column("admitted").min == datetime(2000, 1, 1)
    assert [c.name for c in loaded.modelled_columns] == ["age", "code", "admitted", "smoker"]
    assert loaded.by_role(PrivacyRole.DIRECT_IDENTIFIER)[0].name == "mrn"


def test_every_problem_in_a_schema_file_is_listed_with_its_place(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: t\ncolumns:\n"
        "  - {name: a, kind: numerical, min: 5, max: 1}\n"
        "  - {name: b, kind: categorical, domain: []}\n"
        "  - {name: c, kind: colour}\n"
    )
    with pytest.raises(SchemaError) as err:
        TableSchema.load(path)
    text = str(err.value)
    assert str(path) in text
    assert "3 problem(s)" in text
    assert "columns[0] (a)" in text and "min 5.0 is above max 1.0" in text
    assert "columns[1] (b).domain" in text
    assert "columns[2] (c).kind: 'colour' is not one of numerical, categorical" in text


def test_an_unknown_key_names_the_closest_known_one() -> None:
    """Unknown keys read "Extra inputs are not permitted" with pydantic's union tag in the
    place (columns.1.numerical.minimum) and no hint of the right key."""
    with pytest.raises(SchemaError) as err:
        TableSchema.from_dict(
            {"name": "t", "columns": [{"name": "height", "kind": "numerical", "minimum": 3}]}
        )
    assert "columns[0] (height).minimum: unknown key 'minimum'; did you mean 'min'?" in str(
        err.value
    )
    assert "numerical.minimum" not in str(err.value)


def test_repeated_column_names_are_refused() -> None:
    with pytest.raises(SchemaError, match=r"repeated: \['a'\]"):
        TableSchema.from_dict(
            {"name": "t", "columns": [{"name": "a", "kind": "text"}, {"name": "a", "kind": "text"}]}
        )


def test_direct_identifier_role_requires_identifier_kind() -> None:
    with pytest.raises(ValueError, match="requires kind 'identifier'"):
        TextColumn(name="email", role="direct_identifier")


def test_unknown_fields_are_refused_rather_than_ignored() -> None:
    with pytest.raises(SchemaError, match="maximum"):
        TableSchema.from_yaml("name: t\ncolumns:\n  - {name: a, kind: numerical, maximum: 3}\n")


def test_not_yaml_names_the_file() -> None:
    with pytest.raises(SchemaError, match=r"s\.yaml: not valid YAML"):
        TableSchema.from_yaml("name: [unclosed", source="s.yaml")


def test_json_schema_export_describes_every_kind() -> None:
    exported = TableSchema.json_schema()
    text = json.dumps(exported)
    for kind in ("numerical", "categorical", "boolean", "datetime", "identifier", "text"):
        assert f'"{kind}"' in text
    assert "direct_identifier" in text


def test_yaml_words_like_no_or_yes_stay_categories_not_booleans() -> None:
    schema = TableSchema.from_yaml(
        "name: t\ncolumns:\n"
        "  - {name: country, kind: categorical, domain: [NO, SE, DK], nullable: false}\n"
        "  - {name: answer, kind: categorical, domain: [yes, no, off]}\n"
    )
    assert schema.columns[0].domain == ["NO", "SE", "DK"]
    assert schema.columns[1].domain == ["yes", "no", "off"]
    assert schema.columns[0].nullable is False
