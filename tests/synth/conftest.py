"""Fixtures for the synthesizer tests: small typed tables with known structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from fedsynth.frame import conform
from fedsynth.schema import TableSchema
from fedsynth.synth import GaussianCopula

PATIENTS = TableSchema.from_dict(
    {
        "name": "patients",
        "columns": [
            {"name": "record", "kind": "identifier"},
            {"name": "note", "kind": "text"},
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 110},
            {"name": "income", "kind": "numerical", "min": 0, "max": 500000},
            {"name": "bmi", "kind": "numerical", "min": 10, "max": 60},
            {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
            {"name": "diagnosis", "kind": "categorical", "domain": ["flu", "cold", "rare_x"]},
            {"name": "smoker", "kind": "boolean"},
            {
                "name": "admission",
                "kind": "datetime",
                "min": "2020-01-01",
                "max": "2021-12-31",
            },
            {
                "name": "discharge",
                "kind": "datetime",
                "min": "2020-01-01",
                "max": "2022-03-31",
            },
        ],
    }
)


def patients(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Patients with correlated age/income, 0.5% rare diagnoses, nulls that co-occur."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    income = np.round(np.clip(rng.lognormal(10, 0.4, n) * age / 50, 0, 500000), 2)
    admission = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    diagnosis = np.where(np.arange(n) % 200 == 0, "rare_x", rng.choice(["flu", "cold"], n))
    df = pd.DataFrame(
        {
            "record": [f"r{i}" for i in range(n)],
            "note": ["free text"] * n,
            "age": age,
            "income": income,
            "bmi": np.round(np.clip(rng.normal(26, 4, n), 10, 60), 1),
            "sex": rng.choice(["F", "M"], n),
            "diagnosis": diagnosis,
            "smoker": rng.random(n) < 0.3,
            "admission": admission,
            "discharge": admission + pd.to_timedelta(rng.integers(0, 60, n), unit="D"),
        }
    )
    missing = rng.random(n) < 0.15
    df.loc[missing, "income"] = np.nan
    df.loc[missing, "bmi"] = np.nan
    return conform(df, PATIENTS)


@pytest.fixture
def schema() -> TableSchema:
    return PATIENTS


@pytest.fixture
def make_patients() -> Callable[..., pd.DataFrame]:
    return patients


@pytest.fixture(scope="module")
def fitted_copula() -> tuple[GaussianCopula, pd.DataFrame]:
    """A copula fitted once per test module on 3000 patients, with its real rows."""
    real = patients(3000)
    return GaussianCopula().fit(real, PATIENTS), real
