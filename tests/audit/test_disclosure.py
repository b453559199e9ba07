"""Identity disclosure, mixed-type distances, DCR overfitting and membership inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.audit.disclosure import (
    distance_to_closest_record,
    identity_disclosure,
    membership_inference,
    nearest_distances,
)
from fedsynth.audit.encoding import MixedEmbedding
from fedsynth.schema import TableSchema

MIXED = TableSchema.model_validate(
    {
        "name": "mixed",
        "columns": [
            {"name": "x", "kind": "numerical"},
            {"name": "c", "kind": "categorical", "domain": ["a", "b", "c"]},
            {"name": "flag", "kind": "boolean"},
        ],
    }
)

rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.floats(min_value=-100, max_value=100, allow_nan=False)),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=2,
    max_size=25,
)


def _frame(values: list[tuple[float | None, str | None, bool | None]]) -> pd.DataFrame:
    x, c, flag = zip(*values, strict=True)
    return pd.DataFrame(
        {
            "x": pd.array([np.nan if v is None else v for v in x], dtype="float64"),
            "c": pd.Categorical(c, categories=["a", "b", "c"]),
            "flag": pd.array(flag, dtype="boolean"),
        }
    )


def _mixed_distance(a: pd.Series, b: pd.Series, low: float, span: float) -> float:
    """The documented mixed-type distance, written out directly."""
    total = 0.0
    if pd.isna(a["x"]) != pd.isna(b["x"]):
        present = a["x"] if not pd.isna(a["x"]) else b["x"]
        total += 1 + ((present - low) / span) ** 2
    elif not pd.isna(a["x"]):
        total += ((a["x"] - b["x"]) / span) ** 2
    for name in ("c", "flag"):
        same = (pd.isna(a[name]) and pd.isna(b[name])) or (
            not pd.isna(a[name]) and not pd.isna(b[name]) and a[name] == b[name]
        )
        total += 0.0 if same else 1.0
    return float(np.sqrt(total))


@settings(max_examples=60, deadline=None)
@given(rows)
def test_embedding_distance_is_the_mixed_type_distance(values: list) -> None:
    df = _frame(values)
    embedding = MixedEmbedding(MIXED.columns).fit(df)
    vectors = embedding.transform(df).astype(np.float64)
    present = df["x"].dropna()
    low = float(present.min()) if len(present) else 0.0
    span = float(present.max() - low) if len(present) and present.max() > low else 1.0
    for i in range(len(df)):
        for j in range(len(df)):
            expected = _mixed_distance(df.iloc[i], df.iloc[j], low, span)
            assert abs(np.linalg.norm(vectors[i] - vectors[j]) - expected) < 1e-4


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 60), st.integers(0, 2**31))
def test_chunked_nearest_distances_equal_the_full_matrix_minimum(
    n_queries: int, n_reference: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(n_queries, 3)).astype(np.float32)
    reference = rng.normal(size=(n_reference, 3)).astype(np.float32)
    full = np.sqrt(((queries[:, None, :] - reference[None, :, :]) ** 2).sum(-1)).min(1)
    assert np.allclose(nearest_distances(queries, reference), full, atol=1e-3)


def _numbers(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": values,
            "c": pd.Categorical(np.full(len(values), "a"), categories=["a", "b", "c"]),
            "flag": pd.array(np.zeros(len(values), bool), dtype="boolean"),
        }
    )


def test_identity_disclosure_counts_exact_copies_and_unique_people() -> None:
    rng = np.random.default_rng(0)
    train = _numbers(np.arange(100.0))
    synthetic = _numbers(np.concatenate([np.arange(10.0), np.arange(1000.0, 1090.0)]))
    holdout = _numbers(np.arange(200.0, 300.0))
    report = identity_disclosure(train, synthetic, holdout, MIXED.columns, MIXED.columns, rng)
    assert report.exact_match_rate == 0.10
    assert report.holdout_exact_match_rate == 0.0
    assert report.qi_unique_records == 100
    assert report.unique_match_rate == 0.10
    assert report.holdout_unique_match_rate == 0.0
    assert report.exact_match_excess == 0.10


def test_copies_are_estimated_in_full_even_against_a_small_holdout() -> None:
    rng = np.random.default_rng(0)
    train = _numbers(rng.normal(size=2000))
    holdout = _numbers(rng.normal(size=200))
    report = identity_disclosure(train, train, holdout, MIXED.columns, MIXED.columns, rng)
    assert report.exact_match_rate == 1.0
    assert report.reference_exact_match_rate == 0.1
    assert report.exact_match_excess == 1.0


def test_natural_duplicates_are_not_counted_as_copies() -> None:
    rng = np.random.default_rng(0)
    train, holdout, fresh = (_numbers(rng.integers(0, 5, size=400).astype(float)) for _ in "abc")
    report = identity_disclosure(train, fresh, holdout, MIXED.columns, MIXED.columns, rng)
    assert report.exact_match_rate == 1.0
    assert report.exact_match_excess == 0.0


def test_dcr_and_membership_flag_copies_and_clear_fresh_samples() -> None:
    rng = np.random.default_rng(0)
    train, holdout, fresh = (_numbers(rng.normal(size=400)) for _ in range(3))
    embedding = MixedEmbedding(MIXED.columns).fit(train, holdout, fresh)
    limits = {"max_queries": 400, "max_reference": 400}
    copied = distance_to_closest_record(train, train, holdout, embedding, rng=rng, **limits)
    assert copied.share_closer_to_train == 1.0
    assert copied.train_quantiles["p50"] < 1e-3
    assert sum(copied.histogram.train) == 400
    clean = distance_to_closest_record(train, fresh, holdout, embedding, rng=rng, **limits)
    assert 0.4 < clean.share_closer_to_train < 0.6
    attack = membership_inference(train, train, holdout, embedding, rng=rng, **limits)
    assert attack.auc > 0.99
    blind = membership_inference(train, fresh, holdout, embedding, rng=rng, **limits)
    assert 0.4 < blind.auc < 0.6
