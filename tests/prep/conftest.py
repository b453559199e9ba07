"""Shared fixtures for the preparation and linkage tests: a common schema and a secret."""

from __future__ import annotations

import pytest

from fedsynth.prep.tokens import LinkageSecret
from fedsynth.schema import TableSchema

PATIENTS_YAML = """
name: patients
columns:
  - {name: patient_id, kind: identifier}
  - {name: first_name, kind: identifier}
  - {name: last_name, kind: identifier}
  - {name: birth_date, kind: datetime, role: quasi_identifier, min: 1900-01-01}
  - {name: sex, kind: categorical, domain: [female, male]}
  - {name: weight_kg, kind: numerical, min: 20, max: 300}
  - {name: glucose_mmol, kind: numerical, min: 1, max: 40}
  - {name: age, kind: numerical, dtype: int, min: 0, max: 120}
  - {name: smoker, kind: boolean}
"""


@pytest.fixture
def patients() -> TableSchema:
    return TableSchema.from_yaml(PATIENTS_YAML)


@pytest.fixture
def secret() -> LinkageSecret:
    return LinkageSecret(b"test-secret-0123456789abcdef-xyz")
