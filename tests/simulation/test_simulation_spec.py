"""SimulationSpec documents: what they accept, and that refused ones list every problem."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.schema import BooleanColumn, CategoricalColumn, DatetimeColumn, NumericalColumn
from fedsynth.simulation import SimulationSpec, SimulationSpecError, Simulator

VALID = """
name: trial
variables:
  - name: weight
    type: numerical
    equation: "20 + 0.3 * age"
    noise: {family: normal, sd: 5}
    bounds: {min: 30, max: 200}
  - name: age
    type: numerical
    dtype: int
    distribution: {family: uniform, low: 18, high: 90}
  - name: answer
    type: categorical
    probabilities: {yes: 0.4, no: 0.6}
  - name: sick
    type: boolean
    logit: "-3 + 0.02 * age"
  - name: seen
    type: date
    origin: "2024-01-01"
    days: {distribution: {family: uniform, low: 0, high: 30}}
"""


def test_a_valid_spec_orders_variables_after_their_parents() -> None:
    spec = SimulationSpec.from_yaml(VALID)
    order = [v.name for v in spec.order()]
    assert order.index("age") < order.index("weight")
    assert order.index("age") < order.index("sick")


def test_the_table_schema_follows_the_declared_variables() -> None:
    schema = SimulationSpec.from_yaml(VALID).table_schema()
    weight = schema.column("weight")
    assert isinstance(weight, NumericalColumn) and (weight.min, weight.max) == (30, 200)
    assert isinstance(schema.column("age"), NumericalColumn)
    assert schema.column("age").dtype == "int"
    assert isinstance(schema.column("answer"), CategoricalColumn)
    assert isinstance(schema.column("sick"), BooleanColumn)
    assert isinstance(schema.column("seen"), DatetimeColumn)


def test_yes_and_no_stay_category_names_not_booleans() -> None:
    answer = SimulationSpec.from_yaml(VALID).variable("answer")
    assert answer.domain() == ["yes", "no"]


def test_invalid_spec_is_refused_with_every_problem_listed() -> None:
    text = """
name: broken
variables:
  - name: a
    type: categorical
    probabilities: {x: 0.5, y: 0.4}
  - name: b
    type: numerical
    equation: "2 * nowhere"
  - name: c
    type: boolean
    probability: 0.3
    logit: "a + 1"
  - name: d
    type: categorical
    given: [a]
    table:
      - when: {a: x}
        probabilities: {p: 1.0}
  - name: e
    type: date
    origin: "not a date"
    days: {distribution: {family: uniform, low: 0, high: 1}}
  - name: b
    type: boolean
    probability: 0.5
"""
    with pytest.raises(SimulationSpecError) as caught:
        SimulationSpec.from_yaml(text, source="broken.yaml")
    message = str(caught.value)
    assert message.startswith("broken.yaml: ")
    assert "sum to 0.9" in message
    assert "unknown variables ['nowhere']" in message
    assert "exactly one of 'probability' or 'logit'" in message
    assert "does not cover 1 parent combination" in message and "'y'" in message
    assert "neither an ISO date" in message
    assert "repeated: ['b']" in message
    assert "6 problem(s)" in message


def test_field_errors_name_the_variable_and_field() -> None:
    text = """
name: broken
variables:
  - name: height
    type: numerical
    distribution: {family: normal, mean: 170, sd: -3}
  - name: kind
    type: wrong
"""
    with pytest.raises(SimulationSpecError) as caught:
        SimulationSpec.from_yaml(text)
    message = str(caught.value)
    assert "variables[0] (height).distribution.normal.sd" in message
    assert "variables[1] (kind)" in message


def test_a_dependency_cycle_is_refused_naming_the_cycle() -> None:
    text = """
name: loop
variables:
  - {name: x, type: numerical, equation: "y + 1"}
  - {name: y, type: numerical, equation: "x * 2"}
"""
    with pytest.raises(SimulationSpecError, match=r"cycle: \['x', 'y', 'x'\]"):
        SimulationSpec.from_yaml(text)


@pytest.mark.parametrize(
    "attack",
    [
        "__import__('os').system('touch /tmp/fedsynth_pwned')",
        "age.__class__.__bases__",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "(lambda: 1)()",
        "open('/etc/passwd')",
    ],
)
def test_equations_cannot_run_python(attack: str, tmp_path: object) -> None:
    text = f"""
name: attack
variables:
  - {{name: age, type: numerical, distribution: {{family: uniform, low: 0, high: 1}}}}
  - name: evil
    type: numerical
    equation: {json.dumps(attack)}
"""
    with pytest.raises(SimulationSpecError, match="evil"):
        SimulationSpec.from_yaml(text)


def test_json_schema_describes_every_variable_type() -> None:
    schema = SimulationSpec.json_schema()
    text = json.dumps(schema)
    for kind in ("categorical", "boolean", "numerical", "date", "name", "sequence"):
        assert f'"{kind}"' in text
    assert "variables" in schema["properties"]


def test_yaml_round_trip_keeps_the_spec() -> None:
    spec = SimulationSpec.from_yaml(VALID)
    assert SimulationSpec.from_yaml(spec.to_yaml()) == spec


@settings(max_examples=30, deadline=None)
@given(
    weights=st.dictionaries(
        st.from_regex(r"[a-z]{1,6}", fullmatch=True),
        st.floats(min_value=0.01, max_value=10),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_categorical_spec_round_trips_and_draws_only_its_categories(
    weights: dict[str, float], seed: int
) -> None:
    total = sum(weights.values())
    probabilities = {k: v / total for k, v in weights.items()}
    spec = SimulationSpec.from_dict(
        {
            "name": "p",
            "variables": [{"name": "c", "type": "categorical", "probabilities": probabilities}],
        }
    )
    assert SimulationSpec.from_yaml(spec.to_yaml()) == spec
    drawn = Simulator(spec).sample(50, seed=seed)["c"]
    assert set(drawn.astype(str)) <= set(probabilities)
