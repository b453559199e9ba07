"""DP marginal and DP copula: stated noise variances, federated sums, public-only preprocessing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.privacy.secagg import FixedPoint, SecAggParty, SecAggRound, secure_sum
from fedsynth.schema import CategoricalColumn, NumericalColumn, SchemaError, TableSchema
from fedsynth.synth.base import Synthesizer
from fedsynth.synth.constraints import ConstraintError
from fedsynth.synth.dp_copula import DPGaussianCopula
from fedsynth.synth.dp_marginal import (
    EMPTY_CELL_SIGMAS,
    GROUP_SIGMAS,
    TREE_GROUP_SIGMAS,
    UNORDERED_TREE_GROUP_SIGMAS,
    DPMarginalSynthesizer,
    Query,
    _allocate,
    _fuse,
    _groups,
    _least_squares,
    _tree,
    column_cells,
)
from fedsynth.synth.dp_public import project_counts
from fedsynth.synth.stats import StatsError

SCHEMA = TableSchema.from_dict(
    {
        "name": "people",
        "columns": [
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 18, "max": 40},
            {"name": "income", "kind": "numerical", "min": 0, "max": 100, "nullable": True},
            {"name": "sex", "kind": "categorical", "domain": ["F", "M"], "nullable": False},
            {"name": "smoker", "kind": "boolean", "nullable": False},
        ],
    }
)
MODELS = [DPMarginalSynthesizer, DPGaussianCopula]


def _people(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 41, n)
    income = np.clip(age * 2 + rng.normal(0, 5, n), 0, 100).round(2)
    income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "income": income,
            "sex": np.where(age > 30, "M", rng.choice(["F", "M"], n)),
            "smoker": rng.random(n) < 0.3,
        }
    )


def _normalised_noise(model: DPMarginalSynthesizer | DPGaussianCopula, df: pd.DataFrame) -> float:
    exact = model.counts(df)
    variances = model.noise_variances()
    draws = [
        (model.measure(df, rng=np.random.default_rng(seed)) - exact) ** 2 / variances
        for seed in range(40)
    ]
    return float(np.mean(draws))


@pytest.mark.parametrize("model_cls", MODELS)
def test_every_round_carries_noise_of_the_stated_variance(model_cls: type) -> None:
    df = _people()
    model = model_cls(epsilon=1.0)
    model.start(SCHEMA)
    for number in range(1, model.rounds_ + 1):
        assert _normalised_noise(model, df) == pytest.approx(1.0, abs=0.06), number
        model.absorb(model.measure(df, rng=np.random.default_rng(number)))


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_the_fit_spends_exactly_its_epsilon(model_cls: type, epsilon: float) -> None:
    model = model_cls(epsilon=epsilon, delta=1e-6).fit(_people(), SCHEMA)
    assert model.privacy_cost_.epsilon_at(1e-6) == pytest.approx(epsilon, rel=1e-6)
    assert model.privacy_cost_.epsilon_at(1e-6) <= epsilon


def _thirds(df: pd.DataFrame) -> list[pd.DataFrame]:
    third = len(df) // 3
    return [df.iloc[i * third : (i + 1) * third] for i in range(3)]


def _signing() -> tuple[dict, dict]:
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("a", "b", "c")}
    return {n: SecAggParty(n, k) for n, k in keys.items()}, {
        n: k.public_key() for n, k in keys.items()
    }


def test_federated_dp_marginal_under_secure_aggregation_has_central_noise() -> None:
    df = _people(900)
    parts = dict(zip("abc", _thirds(df), strict=True))
    parties, verify = _signing()
    model = DPMarginalSynthesizer(epsilon=1.0)
    model.start(SCHEMA)
    exact = model.counts(df)
    variances = model.noise_variances()
    fixed = FixedPoint(bound=1e7, parties=3)
    with_secagg, without = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        shares = {n: model.measure(p, share=1 / 3, rng=rng) for n, p in parts.items()}
        total = secure_sum(SecAggRound(f"r{seed}", ("a", "b", "c")), parties, shares, fixed, verify)
        with_secagg.append((total - exact) ** 2 / variances)
        alone = sum(model.measure(p, rng=rng) for p in parts.values())
        without.append((alone - exact) ** 2 / variances)
    assert np.mean(with_secagg) == pytest.approx(1.0, abs=0.08)
    assert np.mean(without) == pytest.approx(3.0, abs=0.25)


def test_federated_fit_from_summed_rounds_samples_like_a_model() -> None:
    df = _people(900)
    parts = _thirds(df)
    model = DPMarginalSynthesizer(epsilon=4.0)
    model.start(SCHEMA)
    for _ in range(model.rounds_):
        model.absorb(sum(model.measure(p, share=1 / 3) for p in parts))
    rows = model.sample(200, seed=3)
    assert list(rows.columns) == SCHEMA.names
    assert rows["age"].between(18, 40).all()


@pytest.mark.parametrize("model_cls", MODELS)
def test_a_column_without_public_bounds_is_refused(model_cls: type) -> None:
    open_schema = TableSchema.from_dict(
        {"name": "t", "columns": [{"name": "x", "kind": "numerical"}]}
    )
    with pytest.raises((SchemaError, StatsError), match="min"):
        model_cls().fit(pd.DataFrame({"x": [1.0, 2.0]}), open_schema)


@pytest.mark.parametrize("model_cls", MODELS)
def test_constraints_that_learn_from_rows_are_refused(model_cls: type) -> None:
    model = model_cls(constraints=[{"kind": "fixed_combinations", "columns": ["sex", "smoker"]}])
    with pytest.raises(ConstraintError, match="real rows"):
        model.fit(_people(), SCHEMA)


@pytest.mark.parametrize("model_cls", MODELS)
def test_rounding_comes_from_the_schema_not_the_rows(model_cls: type) -> None:
    coarse = _people()
    coarse["income"] = coarse["income"].round(0)
    a = model_cls().fit(_people(), SCHEMA)
    b = model_cls().fit(coarse, SCHEMA)
    assert a.rounding_ == b.rounding_


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize(("date_format", "whole_days"), [("%Y-%m-%d", True), (None, False)])
def test_a_date_declared_without_a_time_of_day_samples_whole_days(
    model_cls: type, date_format: str | None, whole_days: bool
) -> None:
    people = _people()
    rng = np.random.default_rng(3)
    people["visit"] = pd.Timestamp("2023-01-01") + pd.to_timedelta(
        rng.integers(0, 700, len(people)), unit="D"
    )
    schema = TableSchema.from_dict(
        {
            "name": "visits",
            "columns": [
                *SCHEMA.to_dict()["columns"],
                {
                    "name": "visit",
                    "kind": "datetime",
                    "format": date_format,
                    "min": "2023-01-01",
                    "max": "2024-12-31",
                },
            ],
        }
    )
    visits = model_cls(epsilon=2.0).fit(people, schema).sample(300, seed=1)["visit"].dropna()
    assert len(visits) > 0
    assert bool((visits == visits.dt.normalize()).all()) is whole_days


@pytest.mark.parametrize("model_cls", MODELS)
def test_model_file_round_trip_keeps_the_samples(model_cls: type, tmp_path) -> None:
    model = model_cls(epsilon=2.0).fit(_people(), SCHEMA)
    model.save(tmp_path / "m.fsynth")
    loaded = Synthesizer.load(tmp_path / "m.fsynth")
    assert isinstance(loaded, model_cls)
    assert loaded.privacy_cost_ == model.privacy_cost_
    pd.testing.assert_frame_equal(loaded.sample(50, seed=4), model.sample(50, seed=4))


def test_dp_marginal_keeps_strong_dependence_at_generous_epsilon() -> None:
    df = _people(3000)
    model = DPMarginalSynthesizer(epsilon=8.0).fit(df, SCHEMA)
    rows = model.sample(3000, seed=0)
    real = pd.crosstab(df["sex"], df["age"] > 30, normalize=True).to_numpy()
    synth = pd.crosstab(rows["sex"], rows["age"] > 30, normalize=True).to_numpy()
    assert np.abs(real - synth).sum() < 0.15


@pytest.mark.parametrize("model_cls", MODELS)
def test_a_third_round_or_a_round_before_start_is_refused(model_cls: type) -> None:
    with pytest.raises(ValueError, match="start"):
        model_cls().absorb(np.zeros(3))
    model = model_cls(epsilon=2.0).fit(_people(), SCHEMA)
    with pytest.raises(ValueError, match="start"):
        model.absorb(np.zeros(3))


def test_round_two_pools_rare_categories_and_merges_sparse_neighbouring_bins() -> None:
    numbers = column_cells(
        NumericalColumn(name="x", min=0, max=100, nullable=True), bins=8, sub_bins=1
    )
    counts = np.array([50.0, 40.0, 3.0, 4.0, 2.0, 30.0, 1.0, 0.0, 25.0])
    assert _groups(numbers, counts, threshold=20.0).tolist() == [0, 1, 2, 2, 2, 2, 2, 2, 3]
    counts[-1] = 5.0
    assert _groups(numbers, counts, threshold=20.0)[-1] == 2
    letters = column_cells(
        CategoricalColumn(name="c", domain=["a", "b", "r1", "r2", "r3", "r4"], nullable=False),
        bins=8,
        sub_bins=1,
    )
    counts = np.array([500.0, 15.0, 400.0, 14.0, 12.0, 11.0])
    assert _groups(letters, counts, threshold=20.0).tolist() == [0, 2, 1, 2, 3, 3]


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.floats(0, 200), min_size=33, max_size=33),
    coarse=st.floats(1, 400),
    fine=st.floats(1, 400),
    ordered=st.booleans(),
    sub_bins=st.sampled_from([1, 4]),
)
def test_round_three_groups_split_round_two_groups_and_never_a_public_bin(
    counts: list[float], coarse: float, fine: float, ordered: bool, sub_bins: int
) -> None:
    column = (
        NumericalColumn(name="x", min=0, max=100, nullable=True)
        if ordered
        else CategoricalColumn(name="x", domain=list("abcdefgh"), nullable=True)
    )
    cells = column_cells(column, bins=8, sub_bins=sub_bins)
    wide = _groups(cells, np.array(counts[: cells.size]), coarse)
    narrow = _groups(cells, np.array(counts[: cells.size]), fine, wide)
    for labels in (wide, narrow):
        assert sorted(set(labels.tolist())) == list(range(int(labels.max()) + 1))
        for unit in range(int(cells.units.max()) + 1):
            assert len(set(labels[cells.units == unit].tolist())) == 1
    for group in range(int(narrow.max()) + 1):
        assert len(set(wide[narrow == group].tolist())) == 1
    if ordered:
        values = narrow[: cells.values]
        assert (np.diff(values) >= 0).all()


@settings(max_examples=100, deadline=None)
@given(
    fine=st.lists(st.floats(-50, 50), min_size=6, max_size=6),
    coarse=st.lists(st.floats(-50, 50), min_size=3, max_size=3),
    fine_var=st.floats(0.1, 100),
    coarse_var=st.floats(0.1, 100),
)
def test_fusing_a_coarse_table_into_a_fine_one_is_the_least_squares_estimate(
    fine: list[float], coarse: list[float], fine_var: float, coarse_var: float
) -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    fused = _fuse(np.array(fine), fine_var, np.array(coarse), coarse_var, labels)
    exact = _least_squares(
        6, [(np.arange(6), np.array(fine), fine_var), (labels, np.array(coarse), coarse_var)]
    )
    np.testing.assert_allclose(fused, exact, atol=1e-8)


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.lists(st.floats(0, 10), min_size=5, max_size=5), min_size=1, max_size=4),
    parents=st.lists(st.integers(0, 3), min_size=1, max_size=300),
    seed=st.integers(0, 2**32 - 1),
)
def test_controlled_rounding_gives_each_parent_its_expected_counts_to_within_one(
    weights: list[list[float]], parents: list[int], seed: int
) -> None:
    probabilities = np.array(weights)
    labels = np.array(parents) % probabilities.shape[0]
    cells = _allocate(probabilities, labels, np.random.default_rng(seed))
    for parent in np.unique(labels):
        row = probabilities[parent]
        p = row / row.sum() if row.sum() > 0 else np.full(row.size, 1 / row.size)
        rows = int((labels == parent).sum())
        counts = np.bincount(cells[labels == parent], minlength=row.size)
        assert counts.sum() == rows
        assert np.all(np.abs(counts - p * rows) < 1)
        assert np.all(counts[p == 0] == 0)


def test_a_wide_category_keeps_its_groups_in_selection_and_its_number_is_cut_into_runs() -> None:
    cities = [f"c{i:02d}" for i in range(40)]
    schema = TableSchema.from_dict(
        {
            "name": "towns",
            "columns": [
                {"name": "city", "kind": "categorical", "domain": cities, "nullable": False},
                {"name": "price", "kind": "numerical", "min": 0, "max": 100, "nullable": False},
                {"name": "size", "kind": "numerical", "min": 0, "max": 100, "nullable": False},
            ],
        }
    )
    rng = np.random.default_rng(0)
    city = rng.integers(0, 40, 4000)
    df = pd.DataFrame(
        {
            "city": np.array(cities)[city],
            "price": np.clip(city * 2 + rng.normal(10, 5, city.size), 0, 100),
            "size": rng.uniform(0, 100, city.size),
        }
    )
    model = DPMarginalSynthesizer(epsilon=1.0)
    model.start(schema)
    model.absorb(model.counts(df))
    cap = 4000 / (GROUP_SIGMAS * model.queries_[0].sigma)
    selection = model.selection_groups_
    for query in model.queries_:
        assert query.size <= max(cap, 2 * max(query.shape))
        for j, groups in zip(query.columns, query.groups, strict=True):
            # a coarsening of the column's selection groups, in runs for a number
            for group in range(int(selection[j].max()) + 1):
                assert len(set(groups[selection[j] == group].tolist())) == 1
            if j > 0:
                assert (np.diff(groups) >= 0).all()
    city_price = next(q for q in model.queries_ if q.columns == (0, 1))
    assert np.array_equal(city_price.groups[0], selection[0])
    assert city_price.shape[1] < int(selection[1].max()) + 1


def _towns(cities: int, per_city: int, seed: int = 0) -> tuple[TableSchema, pd.DataFrame]:
    names = [f"c{i:02d}" for i in range(cities)]
    schema = TableSchema.from_dict(
        {
            "name": "towns",
            "columns": [
                {"name": "city", "kind": "categorical", "domain": names, "nullable": False},
                {"name": "price", "kind": "numerical", "min": 0, "max": 100, "nullable": False},
            ],
        }
    )
    rng = np.random.default_rng(seed)
    city = np.repeat(np.arange(cities), per_city)
    price = np.clip(city * (100 / cities) + rng.uniform(0, 100 / cities, city.size), 0, 99.9)
    return schema, pd.DataFrame({"city": np.array(names)[city], "price": price})


def test_tree_table_cells_under_the_noise_cut_are_read_as_empty() -> None:
    schema, df = _towns(10, 200)
    model = DPMarginalSynthesizer(epsilon=1.0)
    model.start(schema)
    model.absorb(model.counts(df))
    exact = model.counts(df)
    sigma = model.queries_[0].sigma
    bump = (EMPTY_CELL_SIGMAS - 0.5) * sigma
    model.absorb(exact + np.where(exact == 0, bump, 0.0))
    (table,) = model.edges_
    empty = exact.reshape(table.shape) == 0
    assert empty.sum() > 20
    # what is left on an empty cell is a small share of the noise put there
    assert table[empty].mean() < 0.1 * bump / len(df)


def test_categories_stay_apart_in_the_tree_round_down_to_fewer_rows_than_bins() -> None:
    schema, df = _towns(20, 40)
    model = DPMarginalSynthesizer(epsilon=0.5)
    model.start(schema)
    model.absorb(model.counts(df))
    sigma = model.queries_[0].sigma
    assert UNORDERED_TREE_GROUP_SIGMAS * sigma <= 40 < TREE_GROUP_SIGMAS * sigma
    city, price = model.groups_
    assert int(city.max()) + 1 == 20
    assert int(price.max()) + 1 < 20


def test_selection_prefers_a_wide_categorys_strong_dependence_to_a_fine_tables_weak_one() -> None:
    high = np.arange(40) % 2 == 0
    strong = np.where(high[:, None], [100.0, 0.0], [0.0, 100.0])
    partial = np.where(high[:, None], [80.0, 20.0], [20.0, 80.0])
    checker = 4000 / 81 + 45.0 * np.where(np.add.outer(np.arange(9), np.arange(9)) % 2, -1, 1)
    tables = {(0, 1): strong, (0, 2): partial, (1, 2): checker}
    chosen = _tree(3, [_measured(pair, table) for pair, table in tables.items()])
    assert {tuple(sorted(edge)) for edge in chosen} == {(0, 1), (0, 2)}
    # the fine table's L1 distance from independence is the larger of the two
    assert _l1(checker) > _l1(partial)


def _measured(pair: tuple[int, int], table: np.ndarray) -> tuple[Query, np.ndarray, np.ndarray]:
    groups = tuple(np.arange(n) for n in table.shape)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return Query(pair, groups, 1e-6), table, expected


def _l1(table: np.ndarray) -> float:
    return float(np.abs(table - _measured((0, 1), table)[2]).sum())


def _crowded(n: int = 6000, seed: int = 0) -> tuple[TableSchema, pd.DataFrame]:
    """A number whose rows fill only the lowest quarter of four public bins (width 10), and a
    category that follows it."""
    schema = TableSchema.from_dict(
        {
            "name": "crowded",
            "columns": [
                {"name": "x", "kind": "numerical", "min": 0, "max": 320, "nullable": False},
                {"name": "kind", "kind": "categorical", "domain": ["a", "b"], "nullable": False},
                {"name": "y", "kind": "numerical", "min": 0, "max": 100, "nullable": False},
            ],
        }
    )
    rng = np.random.default_rng(seed)
    bins = rng.integers(0, 4, n)
    df = pd.DataFrame(
        {
            "x": bins * 10 + rng.uniform(0, 2.5, n),
            "kind": np.where(bins < 2, "a", "b"),
            "y": rng.uniform(0, 100, n),
        }
    )
    return schema, df


def test_public_bins_are_measured_whole_and_dense_ones_again_by_sub_bin() -> None:
    schema, df = _crowded()
    model = DPMarginalSynthesizer(epsilon=4.0)
    model.start(schema)
    x = model.layout_[0]
    assert x.size == 32 * model.sub_bins
    assert model.queries_[0].shape == (32,)
    for query, cells in zip(model.queries_, model.layout_, strict=True):
        assert np.array_equal(query.groups[0], cells.units)
    model.absorb(model.counts(df))
    model.absorb(model.counts(df))
    sub_queries = {q.columns[0]: q for q in model.queries_ if len(q.columns) == 1}
    labels = sub_queries[0].groups[0]
    crowded = np.isin(x.units, [0, 1, 2, 3])
    assert sorted(labels[crowded].tolist()) == list(range(1, crowded.sum() + 1))
    assert (labels[~crowded] == 0).all()
    # the round's rho is shared between the tree tables and the sub-bin queries, not exceeded
    spent = sum(1 / (2 * q.sigma**2) for q in model.queries_)
    assert spent == pytest.approx(model.round_rhos_[2], rel=1e-9)
    assert _normalised_noise(model, df) == pytest.approx(1.0, abs=0.06)


def test_samples_follow_the_measured_shape_inside_a_public_bin() -> None:
    schema, df = _crowded()
    rows = DPMarginalSynthesizer(epsilon=4.0).fit(df, schema).sample(6000, seed=1)
    assert (rows["x"] < 40).mean() > 0.97
    # uniform draws inside whole bins would put a quarter of the rows in the crowded quarter
    assert ((rows["x"] % 10) < 2.5).mean() > 0.8
    assert ((rows["kind"] == "a") == (rows["x"] < 20)).mean() > 0.9


def test_a_model_file_from_before_sub_bins_still_loads_and_samples_the_same(tmp_path) -> None:
    model = DPMarginalSynthesizer(epsilon=2.0, sub_bins=1).fit(_people(), SCHEMA)
    artifact = model.to_artifact()
    del artifact.body["params"]["sub_bins"], artifact.body["state"]["sub_bins"]
    artifact.write(tmp_path / "old.fsynth")
    loaded = Synthesizer.load(tmp_path / "old.fsynth")
    assert loaded.sub_bins == 1
    pd.testing.assert_frame_equal(loaded.sample(50, seed=4), model.sample(50, seed=4))


def test_dp_copula_keeps_a_narrow_column_narrow_and_its_null_rate() -> None:
    """Noisy counts clipped at zero on 512 bins piled the noise of the empty bins into mass:
    at epsilon 1 a third of the rows of a column spread 1 around 50 landed more than 5 away,
    and a column 90% null came out 60% null."""
    schema = TableSchema.from_dict(
        {
            "name": "narrow",
            "columns": [
                {"name": "peak", "kind": "numerical", "min": 0, "max": 100},
                {"name": "sparse", "kind": "numerical", "min": 0, "max": 100},
            ],
        }
    )
    rng = np.random.default_rng(0)
    n = 5000
    real = pd.DataFrame(
        {
            "peak": rng.normal(50, 1, n),
            "sparse": np.where(rng.random(n) < 0.9, np.nan, rng.normal(30, 5, n)),
        }
    )
    sample = DPGaussianCopula(epsilon=1.0).fit(real, schema).sample(n, seed=1)
    assert ((sample["peak"] - 50).abs() > 5).mean() < 0.2
    assert 0.8 < sample["sparse"].isna().mean() < 0.97


def test_projected_counts_are_non_negative_and_keep_the_total() -> None:
    noisy = np.array([120.0, -3.0, 4.0, -8.0, 1.5, 60.0])
    projected = project_counts(noisy, 180.0)
    assert (projected >= 0).all() and projected.sum() == pytest.approx(180.0)
    assert projected[1] == projected[3] == 0.0 and projected[0] > projected[5] > projected[2]
