"""A known generating process for audit tests: independent draws of it are ideal synthetic data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from fedsynth.frame import conform
from fedsynth.schema import TableSchema

SCHEMA = TableSchema.model_validate(
    {
        "name": "patients",
        "columns": [
            {"name": "record", "kind": "identifier"},
            {
                "name": "age",
                "kind": "numerical",
                "dtype": "int",
                "min": 0,
                "max": 120,
                "role": "quasi_identifier",
            },
            {
                "name": "sex",
                "kind": "categorical",
                "domain": ["F", "M"],
                "role": "quasi_identifier",
            },
            {
                "name": "region",
                "kind": "categorical",
                "domain": ["north", "south", "east", "west", "island"],
                "role": "quasi_identifier",
            },
            {"name": "income", "kind": "numerical", "min": 0},
            {"name": "admitted", "kind": "datetime"},
            {"name": "smoker", "kind": "boolean"},
            {"name": "score", "kind": "numerical"},
            {
                "name": "diagnosis",
                "kind": "categorical",
                "domain": ["a", "b", "c"],
                "role": "sensitive",
            },
        ],
    }
)
REGION_SHARES = [0.3, 0.3, 0.2, 0.19, 0.01]


def generate(n: int, seed: int) -> pd.DataFrame:
    """`n` rows of the patients process; strong dependence among the non-identifying columns."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    noise = rng.normal(size=(6, n))
    sex = rng.choice(["F", "M"], size=n)
    score = 2 * z + 0.4 * noise[2]
    score[rng.random(n) < 0.05] = np.nan
    diagnosis = np.where(z < -0.5, "a", np.where(z < 0.7, "b", "c"))
    flip = rng.random(n) < 0.1
    diagnosis[flip] = rng.choice(["a", "b", "c"], size=int(flip.sum()))
    df = pd.DataFrame(
        {
            "record": [f"r{seed}-{i}" for i in range(n)],
            "age": np.clip(np.round(50 + 15 * z + 3 * noise[0]), 0, 120),
            "sex": sex,
            "region": rng.choice(
                ["north", "south", "east", "west", "island"], p=REGION_SHARES, size=n
            ),
            "income": np.exp(10 + 0.5 * z + 0.15 * noise[1] + 0.2 * (sex == "M")),
            "admitted": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(np.round((60 * z + 5 * noise[3]) * 86400), unit="s"),
            "smoker": (z + 0.3 * noise[4]) > 0.3,
            "score": score,
            "diagnosis": diagnosis,
        }
    )
    return conform(df, SCHEMA)


def shuffle_columns(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every column permuted independently: marginals kept, all dependence destroyed."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {c: df[c].to_numpy()[rng.permutation(len(df))] for c in df.columns}, index=df.index
    ).astype(df.dtypes.to_dict())


@pytest.fixture(scope="session")
def schema() -> TableSchema:
    return SCHEMA


@pytest.fixture(scope="session")
def train() -> pd.DataFrame:
    return generate(1500, seed=1)


@pytest.fixture(scope="session")
def holdout() -> pd.DataFrame:
    return generate(1500, seed=2)


@pytest.fixture(scope="session")
def independent() -> pd.DataFrame:
    return generate(1500, seed=3)


@pytest.fixture(autouse=True, scope="session")
def _one_thread_per_model():
    """The test machine is shared: OpenMP spin-waiting under contention slows fits tenfold."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def shuffled(independent: pd.DataFrame) -> pd.DataFrame:
    return shuffle_columns(independent, seed=4)


@pytest.fixture(scope="session")
def make_patients() -> Callable[[int, int], pd.DataFrame]:
    """The generating process itself, for tests that need their own sizes or seeds."""
    return generate
