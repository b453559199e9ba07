"""Gaussian copula: determinism, types, bounds, nulls, dependence and identifiers."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsynth.frame import pandas_dtype
from fedsynth.schema import NumericalColumn, TableSchema
from fedsynth.synth import GaussianCopula, NotFittedError, SufficientStats, synthesizer_class

Make = Callable[..., pd.DataFrame]


def test_same_seed_gives_same_rows_and_other_seed_differs(fitted_copula) -> None:
    model, _ = fitted_copula
    assert model.sample(500, seed=11).equals(model.sample(500, seed=11))
    assert not model.sample(500, seed=11).equals(model.sample(500, seed=12))


def test_output_has_schema_columns_dtypes_and_bounds(fitted_copula, schema: TableSchema) -> None:
    model, _ = fitted_copula
    out = model.sample(5000, seed=1)
    assert list(out.columns) == schema.names
    for column in schema.columns:
        assert out[column.name].dtype == pandas_dtype(column), column.name
    assert out["age"].between(0, 110).all()
    assert out["income"].dropna().between(0, 500000).all()
    assert (out["admission"] >= pd.Timestamp("2020-01-01")).all()
    assert (out["admission"].dt.normalize() == out["admission"]).all()
    assert (out["bmi"].dropna() * 10 == (out["bmi"].dropna() * 10).round()).all()


def test_identifier_and_text_columns_are_never_modelled(fitted_copula) -> None:
    model, real = fitted_copula
    out = model.sample(100, seed=2)
    assert out["record"].is_unique and not out["record"].isin(real["record"]).any()
    assert out["note"].isna().all()
    assert "record" not in model.marginals_


def test_null_rate_and_pattern_are_modelled(fitted_copula) -> None:
    model, real = fitted_copula
    out = model.sample(20000, seed=3)
    assert out["income"].isna().mean() == pytest.approx(real["income"].isna().mean(), abs=0.02)
    together = (out["income"].isna() == out["bmi"].isna()).mean()
    assert together > 0.9


def test_dependence_between_columns_is_kept(fitted_copula) -> None:
    model, real = fitted_copula
    out = model.sample(20000, seed=4)
    real_corr = real[["age", "income"]].corr(method="spearman").iloc[0, 1]
    synth_corr = out[["age", "income"]].corr(method="spearman").iloc[0, 1]
    assert synth_corr == pytest.approx(real_corr, abs=0.05)


def test_category_frequencies_are_kept(fitted_copula) -> None:
    model, real = fitted_copula
    out = model.sample(20000, seed=5)
    freq = out["sex"].value_counts(normalize=True)
    assert freq["F"] == pytest.approx(real["sex"].value_counts(normalize=True)["F"], abs=0.02)


def test_marginal_report_records_family_and_ks(fitted_copula) -> None:
    report = fitted_copula[0].marginal_report()
    assert set(report) == {c.name for c in fitted_copula[0].schema_.modelled_columns}
    assert "record" not in report
    assert all(entry["ks"] >= 0 for entry in report.values())


def test_sampling_an_unfitted_model_says_fit_first() -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        GaussianCopula().sample(3)


def test_registry_maps_names_to_models() -> None:
    assert synthesizer_class("copula") is GaussianCopula
    with pytest.raises(KeyError, match="known"):
        synthesizer_class("nope")


EMPTY = TableSchema.from_yaml(
    """
name: t
columns:
  - {name: x, kind: numerical, min: 0, max: 100}
  - {name: n, kind: numerical, min: 0, max: 10}
  - {name: i, kind: numerical, dtype: int, min: 0, max: 10}
  - {name: k, kind: categorical, domain: [a, b]}
  - {name: d, kind: datetime, min: 2020-01-01, max: 2021-01-01}
  - {name: b, kind: boolean}
"""
)


def test_an_all_null_column_samples_as_nulls_fitted_centrally_merged_or_loaded(
    tmp_path: Path,
) -> None:
    real = pd.DataFrame({"x": np.linspace(0, 100, 60)})
    for name in ("n", "i", "k", "d", "b"):
        real[name] = None
    unbounded = EMPTY.model_copy(update={"columns": [*EMPTY.columns, NumericalColumn(name="open")]})
    central = GaussianCopula().fit(real.assign(open=None), unbounded)
    parts = [real.iloc[:30], real.iloc[30:]]
    merged = GaussianCopula()
    merged.fit_marginals(reduce(SufficientStats.merge, [merged.stats(p, EMPTY) for p in parts]))
    merged.fit_dependence(
        reduce(SufficientStats.merge, [merged.dependence_stats(p) for p in parts])
    )
    merged.save(tmp_path / "m.fsm")
    for model in (central, merged, GaussianCopula.load(tmp_path / "m.fsm")):
        rows = model.sample(200, seed=3)
        assert rows["x"].notna().all()
        assert rows.drop(columns="x").isna().all().all()
