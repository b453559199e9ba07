"""Constraints hold on every sampled row, and impossible ones fail with the constraint named."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from fedsynth.frame import conform
from fedsynth.schema import TableSchema
from fedsynth.synth import (
    ConstraintError,
    GaussianCopula,
    SamplingError,
    SequentialCART,
    Synthesizer,
    parse_constraints,
)

Make = Callable[..., pd.DataFrame]

HOUSEHOLDS = TableSchema.from_dict(
    {
        "name": "households",
        "columns": [
            {"name": "city", "kind": "categorical", "domain": ["A", "B", "C"]},
            {"name": "zone", "kind": "categorical", "domain": ["1", "2", "3"]},
            {"name": "rent", "kind": "numerical", "min": -100, "max": 5000},
            {"name": "debt", "kind": "numerical", "min": -1000, "max": 100},
            {"name": "own", "kind": "numerical", "dtype": "int", "min": 0, "max": 1},
            {"name": "lease", "kind": "numerical", "dtype": "int", "min": 0, "max": 1},
            {"name": "free", "kind": "boolean"},
        ],
    }
)


def _households(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    city = rng.choice(["A", "B", "C"], n)
    zone = np.where(city == "A", "1", np.where(city == "B", rng.choice(["2", "3"], n), "3"))
    kind = rng.integers(0, 3, n)
    return conform(
        pd.DataFrame(
            {
                "city": city,
                "zone": zone,
                "rent": np.round(rng.gamma(4, 300, n), 2),
                "debt": -np.round(rng.gamma(2, 100, n), 2),
                "own": (kind == 0).astype(int),
                "lease": (kind == 1).astype(int),
                "free": kind == 2,
            }
        ),
        HOUSEHOLDS,
    )


ALL = [
    {"kind": "range", "column": "rent", "min": 100, "max": 3000},
    {"kind": "positive", "column": "rent"},
    {"kind": "negative", "column": "debt", "strict": False},
    {"kind": "fixed_combinations", "columns": ["city", "zone"]},
    {"kind": "one_hot", "columns": ["own", "lease", "free"]},
    {"kind": "predicate", "expression": "rent > 150 or city == 'C'"},
]


@pytest.mark.parametrize("model", [GaussianCopula, SequentialCART])
def test_every_constraint_holds_on_ten_thousand_rows(model: type[Synthesizer]) -> None:
    real = _households()
    fitted = model(constraints=ALL).fit(real[real["rent"].between(160, 3000)], HOUSEHOLDS)
    out = fitted.sample(10_000, seed=3)
    assert len(out) == 10_000
    assert out["rent"].between(100, 3000).all() and (out["rent"] > 0).all()
    assert (out["debt"] <= 0).all()
    seen = set(zip(real["city"], real["zone"], strict=True))
    assert set(zip(out["city"], out["zone"], strict=True)) <= seen
    hot = out["own"].astype(int) + out["lease"].astype(int) + out["free"].astype(int)
    assert (hot == 1).all()
    assert ((out["rent"] > 150) | (out["city"] == "C")).all()


def test_inequality_between_dates_holds_on_ten_thousand_rows(
    schema: TableSchema, make_patients: Make
) -> None:
    rule = [{"kind": "inequality", "low": "admission", "high": "discharge"}]
    out = GaussianCopula(constraints=rule).fit(make_patients(1500), schema).sample(10_000, seed=1)
    assert (out["discharge"] >= out["admission"]).all()


def test_unreachable_constraint_fails_naming_it(schema: TableSchema, make_patients: Make) -> None:
    """A fit from statistics never sees rows, so only sampling can find the rule unreachable."""
    real = make_patients(500)
    helper = GaussianCopula()
    marginal = helper.stats(real, schema)
    helper.fit_marginals(marginal)
    rule = [{"kind": "predicate", "expression": "age > 1000"}]
    model = GaussianCopula.from_stats(marginal, helper.dependence_stats(real), constraints=rule)
    with pytest.raises(SamplingError, match=r"predicate\(expression='age > 1000'\)"):
        model.sample(10, seed=0)


def test_constraint_broken_by_the_real_rows_is_refused_at_fit(
    schema: TableSchema, make_patients: Make
) -> None:
    model = GaussianCopula(constraints=[{"kind": "range", "column": "age", "max": 30}])
    with pytest.raises(ConstraintError, match="real rows break it"):
        model.fit(make_patients(300), schema)


def test_constraint_on_unknown_or_wrong_column_is_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    with pytest.raises(ConstraintError, match="no column 'weight'"):
        GaussianCopula(constraints=[{"kind": "positive", "column": "weight"}]).fit(
            make_patients(100), schema
        )
    with pytest.raises(ConstraintError, match="must be numerical"):
        GaussianCopula(constraints=[{"kind": "positive", "column": "sex"}]).fit(
            make_patients(100), schema
        )


def test_malformed_constraint_document_names_the_field() -> None:
    with pytest.raises(ConstraintError, match="low"):
        parse_constraints([{"kind": "inequality", "high": "b"}])


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo pwned')",
        "age.__class__",
        "[x for x in age]",
        "(lambda: 1)()",
    ],
)
def test_predicate_cannot_run_code(
    expression: str, schema: TableSchema, make_patients: Make
) -> None:
    model = GaussianCopula(constraints=[{"kind": "predicate", "expression": expression}])
    with pytest.raises(ConstraintError, match=r"not allowed|may be called|not modelled columns"):
        model.fit(make_patients(100), schema)
