"""The prep spec document: YAML in, clear errors out, JSON Schema for editors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsynth.prep import PrepSpec, PrepSpecError, output_schema, prepare
from fedsynth.prep.cli import app
from fedsynth.prep.standardize import unit_factor
from fedsynth.prep.tokens import LinkageSecret, SecretError
from fedsynth.schema import NumericalColumn, PrivacyRole, TableSchema


def test_yes_and_no_stay_text_in_value_maps() -> None:
    spec = PrepSpec.from_yaml("source: s\ncolumns: {x: {values: {yes: 1, no: 0, on: off}}}")
    assert spec.columns["x"].values == {"yes": "1", "no": "0", "on": "off"}


def test_numbers_in_yaml_become_text_tokens() -> None:
    spec = PrepSpec.from_yaml("source: s\nmissing: [-999, NA]\ncolumns: {x: {values: {1: a}}}")
    assert spec.missing == ["-999", "NA"]
    assert spec.columns["x"].values == {"1": "a"}


def test_every_problem_is_listed_with_its_place() -> None:
    text = "source: s\ncolumns: {x: {case: sideways, range: {min: 5, max: 1}}}\nbogus: 1\n"
    with pytest.raises(PrepSpecError) as info:
        PrepSpec.from_yaml(text, source="site.yaml")
    message = str(info.value)
    assert message.startswith("site.yaml: 3 problem(s)")
    assert "columns.x.case" in message and "bogus" in message and "above max" in message


def test_linkage_must_refer_to_declared_fields() -> None:
    text = """
source: s
linkage:
  fields: [{column: name}]
  exact_key: [name, dob]
"""
    with pytest.raises(PrepSpecError, match=r"\['dob'\]"):
        PrepSpec.from_yaml(text)


def test_two_source_columns_renamed_onto_one_is_refused() -> None:
    with pytest.raises(PrepSpecError, match="several source columns"):
        PrepSpec.from_yaml("source: s\nrename: {a: x, b: x}")


def test_unknown_unit_pair_names_the_known_ones() -> None:
    spec = PrepSpec.from_yaml("source: s\ncolumns: {w: {unit: {from: stone, to: kg}}}")
    with pytest.raises(PrepSpecError, match="lb -> kg"):
        unit_factor(spec.columns["w"].unit)
    declared = PrepSpec.from_yaml(
        "source: s\ncolumns: {w: {unit: {from: stone, to: kg, factor: 6.35029318}}}"
    )
    assert unit_factor(declared.columns["w"].unit) == (6.35029318, 0.0)


def test_json_schema_export_round_trips_through_the_cli(tmp_path) -> None:
    out = tmp_path / "prep.schema.json"
    result = CliRunner().invoke(app, ["spec-schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document == PrepSpec.json_schema()
    assert {"source", "rename", "columns", "linkage"} <= set(document["properties"])


def test_spec_round_trips_through_json() -> None:
    spec = PrepSpec.from_yaml(
        "source: s\ncolumns: {w: {unit: {from: lb, to: kg}}}\ndedup: {keys: [a]}"
    )
    assert PrepSpec.model_validate_json(spec.to_json()) == spec


def test_spec_read_back_from_json_keeps_the_default_missing_tokens_as_defaults() -> None:
    column = NumericalColumn(name="balance", min=-10000, max=10000)
    for text in ("source: s", "source: s\nmissing: [NA, -999]"):
        spec = PrepSpec.from_yaml(text)
        again = PrepSpec.model_validate_json(spec.to_json())
        assert again.missing_tokens(column) == spec.missing_tokens(column)
    assert "-999" not in PrepSpec.from_yaml("source: s").missing_tokens(column)


SCHEMA = TableSchema.from_yaml(
    """
name: t
columns:
  - {name: email, kind: identifier}
  - {name: v, kind: numerical}
"""
)


def test_direct_identifiers_never_leave_in_the_clear() -> None:
    raw = pd.DataFrame({"email": ["a@x.org", "b@y.org"], "v": ["1", "2"]})
    result = prepare(raw, PrepSpec.from_yaml("source: s"), SCHEMA)
    assert list(result.prepared.columns) == ["v"]
    assert "email" in result.report.dropped_columns
    assert "a@x.org" not in result.prepared.to_csv()


def test_identifier_with_linkage_leaves_only_as_token() -> None:
    raw = pd.DataFrame({"email": ["A@x.org ", "b@y.org"], "v": ["1", "2"]})
    spec = PrepSpec.from_yaml("source: s\nlinkage: {fields: [{column: email, exact: true}]}")
    secret = LinkageSecret(b"spec-test-secret-0123456789abc")
    result = prepare(raw, spec, SCHEMA, secret=secret)
    assert list(result.prepared.columns) == ["v", "tok_email"]
    assert result.prepared["tok_email"].str.fullmatch("[0-9a-f]{64}").all()
    target = output_schema(SCHEMA, spec)
    assert target.column("tok_email").role is PrivacyRole.OTHER
    assert not target.by_role(PrivacyRole.DIRECT_IDENTIFIER)


def test_linkage_without_secret_is_refused() -> None:
    spec = PrepSpec.from_yaml("source: s\nlinkage: {fields: [{column: email, exact: true}]}")
    with pytest.raises(SecretError, match="secret"):
        prepare(pd.DataFrame({"email": ["a"], "v": ["1"]}), spec, SCHEMA)
