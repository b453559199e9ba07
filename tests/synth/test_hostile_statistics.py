"""Statistics a hostile supplier sends the broker: bombs, inconsistent and overflowing counts.

Each file is built here as an attacker would: a valid container whose arrays declare more than
they carry, or counts no honest table gives. They must be refused with an error that names the
array or column, and arrays must be refused before they are inflated.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from functools import reduce

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.frame import conform
from fedsynth.privacy.rounds import vector_bytes, vector_from_bytes
from fedsynth.schema import TableSchema
from fedsynth.synth import Artifact, ArtifactError, GaussianCopula, StatsError, SufficientStats
from fedsynth.synth.artifact import MAGIC
from fedsynth.synth.stats import ColumnStats

Make = Callable[..., pd.DataFrame]
BOMB_VALUES = 10_000_000
"""float64 zeros a bomb member declares: 80 MB inflated, about 80 kB deflated."""
SMALL_PEAK = 4 * 1024**2
"""Bytes a refusal may allocate: a fraction of what inflating the bomb would."""


def _seal(artifact: Artifact, npz: bytes) -> bytes:
    """A container as `Artifact.to_bytes` lays it out, around arrays the caller wrote itself."""
    header = {
        "format_version": 1,
        "kind": artifact.kind,
        "model": artifact.model,
        "fedsynth_version": "0",
        "body": artifact.body,
        "arrays": sorted(artifact.arrays),
    }
    head = json.dumps(header).encode()
    payload = MAGIC + struct.pack("<Q", len(head)) + head + npz
    return payload + hashlib.sha256(payload).digest()


def _npz(arrays: dict[str, np.ndarray], bomb: str | None = None) -> bytes:
    """The arrays as npz members; `bomb`, deflated, declares BOMB_VALUES zeros instead."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            if name != bomb:
                member = io.BytesIO()
                np.save(member, array, allow_pickle=False)
                archive.writestr(f"{name}.npy", member.getvalue())
                continue
            with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                header = {"descr": "<f8", "fortran_order": False, "shape": (BOMB_VALUES,)}
                np.lib.format.write_array_header_1_0(fh, header)
                block = bytes(8 * 1_000_000)
                for _ in range(BOMB_VALUES // 1_000_000):
                    fh.write(block)
    return buffer.getvalue()


def _peak_of(action: Callable[[], object]) -> int:
    """Peak bytes traced while `action` runs (it is expected to raise)."""
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactError) as refused:
            action()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert refused.value is not None
    return peak


def _tampered(stats: SufficientStats, change: Callable[[Artifact], None]) -> bytes:
    """Honest statistics as a supplier would send them, after `change` edited their artifact."""
    artifact = stats.to_artifact()
    change(artifact)
    return artifact.to_bytes()


def test_small_stats_file_declaring_a_huge_array_is_refused_before_inflating(
    schema: TableSchema, make_patients: Make
) -> None:
    artifact = GaussianCopula().stats(make_patients(100), schema).to_artifact()
    bomb = _seal(artifact, _npz(artifact.arrays, bomb="counts_0"))
    assert len(bomb) < BOMB_VALUES * 8 // 100
    peak = _peak_of(lambda: SufficientStats.from_bytes(bomb, source="hospital-a"))
    assert peak < SMALL_PEAK
    with pytest.raises(ArtifactError, match=r"hospital-a.*'counts_0\.npy'.*\(10000000,\).*limit"):
        SufficientStats.from_bytes(bomb, source="hospital-a")


def test_compressed_array_is_never_inflated_past_the_bytes_that_carry_it() -> None:
    artifact = Artifact("synthesizer", "copula", {}, {"weights": np.zeros(3)})
    bomb = _seal(artifact, _npz(artifact.arrays, bomb="weights"))
    peak = _peak_of(lambda: Artifact.from_bytes(bomb, source="model.fsa"))
    assert peak < SMALL_PEAK


def test_caller_bound_on_array_bytes_is_enforced_before_reading() -> None:
    data = Artifact("stats", "x", {}, {"a": np.zeros(100), "b": np.zeros(10)}).to_bytes()
    assert Artifact.from_bytes(data, max_array_bytes=880).arrays["a"].shape == (100,)
    with pytest.raises(
        ArtifactError, match=r"'b\.npy' declares shape \(10,\).* 880 bytes, past their limit of 879"
    ):
        Artifact.from_bytes(data, max_array_bytes=879)
    with pytest.raises(ArtifactError, match="limit of 80 bytes"):
        Artifact.from_bytes(data, max_array_bytes=lambda header: 8 * len(header.arrays) * 5)


def test_stats_arrays_larger_than_their_schema_allows_are_refused_uninflated(
    schema: TableSchema, make_patients: Make
) -> None:
    artifact = GaussianCopula().stats(make_patients(100), schema).to_artifact()
    artifact.arrays["counts_1"] = np.zeros(200_000)
    data = _seal(artifact, _npz(artifact.arrays))
    with pytest.raises(ArtifactError, match=r"'counts_1\.npy' declares shape \(200000,\)"):
        SufficientStats.from_bytes(data, source="hospital-a")


def test_stats_of_another_schema_than_the_expected_one_are_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    other = TableSchema.from_dict({**schema.to_dict(), "name": "elsewhere"})
    data = GaussianCopula().stats(conform(make_patients(50), other), other).to_bytes()
    with pytest.raises(ArtifactError, match="other than the expected 'patients'"):
        SufficientStats.from_bytes(data, source="hospital-a", schema=schema)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.array(["a", "b"]), "dtype '<U1'"),
        (np.array([1 + 2j]), "dtype '<c16'"),
        (np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]), "dtype '|V12'"),
    ],
)
def test_arrays_that_are_not_numbers_are_refused_by_their_header(
    array: np.ndarray, match: str
) -> None:
    artifact = Artifact("stats", "x", {}, {"odd": array})
    with pytest.raises(ArtifactError, match=f"'odd.npy' declares {match}"):
        Artifact.from_bytes(_seal(artifact, _npz(artifact.arrays)))
    with pytest.raises(ArtifactError, match="only numbers are stored"):
        artifact.to_bytes()


def test_columns_counting_different_rows_are_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    """t5: 1e9 rows claimed for `age` while the other columns count 100."""
    honest = GaussianCopula().stats(make_patients(100), schema)

    def claim(artifact: Artifact) -> None:
        counts = np.zeros_like(artifact.arrays["counts_0"])
        counts[-1] = 1e9
        artifact.arrays["counts_0"] = counts

    with pytest.raises(ArtifactError, match=r"hospital-a: column '\w+' counts .* but column 'age'"):
        SufficientStats.from_bytes(_tampered(honest, claim), source="hospital-a")


def test_consistent_counts_above_the_callers_row_bound_are_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    stats = GaussianCopula().stats(make_patients(100), schema)

    def inflate(artifact: Artifact) -> None:
        for name in artifact.arrays:
            if name.startswith("counts_"):
                artifact.arrays[name] = artifact.arrays[name] * 1000
        for column in artifact.body["columns"]:
            column["null_count"] *= 1000

    data = _tampered(stats, inflate)
    assert SufficientStats.from_bytes(data).columns["age"].count == 100_000
    with pytest.raises(ArtifactError, match=r"counts 100000 rows; .* between 1 and 99999 rows"):
        SufficientStats.from_bytes(data, max_rows=99_999)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda a: a.arrays.__setitem__("counts_0", np.full_like(a.arrays["counts_0"], 1e308)),
            "column 'age': a count is above the limit",
        ),
        (
            lambda a: a.body["columns"][1].__setitem__("null_count", 1e308),
            "column 'income': a count is above the limit",
        ),
        (
            lambda a: a.arrays.__setitem__("counts_0", np.full_like(a.arrays["counts_0"], 1e-300)),
            "column 'age': counts of rows must be whole numbers",
        ),
        (
            lambda a: a.body["columns"][1].__setitem__("null_count", 0.5),
            "column 'income': counts of rows must be whole numbers",
        ),
        (
            lambda a: (
                [
                    a.arrays.__setitem__(k, np.zeros_like(v))
                    for k, v in a.arrays.items()
                    if k.startswith("counts_")
                ]
                + [c.__setitem__("null_count", 0.0) for c in a.body["columns"]]
            ),
            "column 'age' counts 0 rows; statistics count between 1",
        ),
    ],
    ids=["counts-1e308", "nulls-1e308", "fractional-counts", "fractional-nulls", "no-rows"],
)
def test_counts_no_table_can_give_are_refused_naming_the_column(
    schema: TableSchema, make_patients: Make, change: Callable[[Artifact], None], match: str
) -> None:
    """t4: counts that overflow on merge, are not whole rows, or count nothing at all."""
    stats = GaussianCopula().stats(make_patients(100), schema)
    with pytest.raises(ArtifactError, match=f"hospital-a: {match}"):
        SufficientStats.from_bytes(_tampered(stats, change), source="hospital-a")


def test_merge_past_exact_float_counting_is_refused_naming_the_column(
    schema: TableSchema, make_patients: Make
) -> None:
    stats = GaussianCopula().stats(make_patients(20), schema)
    age = stats.columns["age"]
    huge = ColumnStats("age", 0.0, np.full_like(age.counts, 2.0**52), age.edges, 0, False)
    with pytest.raises(StatsError, match=r"column 'age': merged statistics count .* past 2\^53"):
        huge.merge(huge)
    dependence = GaussianCopula().fit(make_patients(50), schema).dependence_stats(make_patients(20))
    assert dependence.dependence is not None
    many = dependence.dependence.__class__(**{**dependence.dependence.__dict__, "n": 2.0**53})
    with pytest.raises(StatsError, match="dependence statistics: merged statistics count"):
        many.merge(many)


def _scale(name: str, factor: float) -> Callable[[Artifact], None]:
    """A change that multiplies one dependence array by `factor`."""
    return lambda a: a.arrays.__setitem__(name, a.arrays[name] * factor)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_scale("sum_zz", 1e6), "'sum_zz' is larger than normal scores"),
        (_scale("pair_sum", 1e6), "'pair_sum' is larger than normal scores"),
        (_scale("pair_sum_sq", -1.0), "sums of squares must be non-negative"),
        (_scale("pair_n", 0.5), "pairwise counts must lie in"),
        (
            lambda a: a.arrays.__setitem__("pair_n", np.triu(a.arrays["pair_n"])),
            "pairwise counts must lie in",
        ),
        (lambda a: a.body["dependence"].__setitem__("n", 1e300), "n=1e\\+300 must be a whole"),
        (lambda a: a.body["dependence"].__setitem__("n", 20.5), "n=20.5 must be a whole"),
    ],
    ids=["sum-zz", "pair-sum", "negative-squares", "half-rows", "asymmetric", "huge-n", "half-n"],
)
def test_dependence_sums_no_scores_can_give_are_refused(
    schema: TableSchema, make_patients: Make, change: Callable[[Artifact], None], match: str
) -> None:
    model = GaussianCopula().fit(make_patients(200), schema)
    stats = model.dependence_stats(make_patients(20, seed=3))
    with pytest.raises(ArtifactError, match=f"hospital-a: .*{match}"):
        SufficientStats.from_bytes(_tampered(stats, change), source="hospital-a")


def test_clear_dp_vector_beyond_the_secure_aggregation_range_is_refused() -> None:
    """DP sums carry noise, so negative and fractional values pass; only bounds apply."""
    noisy = np.array([-3.75, 0.1, 12.5])
    np.testing.assert_array_equal(
        vector_from_bytes(vector_bytes(noisy, masked=False), masked=False), noisy
    )
    with pytest.raises(ValueError, match="finite numbers within"):
        vector_from_bytes(vector_bytes(np.array([1.0, 1e300]), masked=False), masked=False)


SMALL = TableSchema.from_dict(
    {
        "name": "small",
        "columns": [
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 110},
            {"name": "x", "kind": "numerical", "min": -5, "max": 5},
            {"name": "k", "kind": "categorical", "domain": ["a", "b", "c"]},
        ],
    }
)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 110),
            st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)),
            st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        ),
        min_size=4,
        max_size=60,
    ),
    cut=st.integers(min_value=1, max_value=59),
)
def test_honest_stats_round_trip_and_merge_unchanged(
    rows: list[tuple[int, float | None, str | None]], cut: int
) -> None:
    df = pd.DataFrame(rows, columns=["age", "x", "k"])
    df.loc[0, ["x", "k"]] = [0.0, "a"]
    df = conform(df, SMALL)
    cut = min(cut, len(df) - 1)
    parts = [df.iloc[:cut], df.iloc[cut:]]

    def received(stats: SufficientStats, rows: int) -> SufficientStats:
        return SufficientStats.from_bytes(stats.to_bytes(), schema=SMALL, max_rows=rows)

    sent = [GaussianCopula().stats(p, SMALL) for p in parts]
    merged = reduce(
        SufficientStats.merge, [received(s, len(p)) for s, p in zip(sent, parts, strict=True)]
    )
    whole = GaussianCopula().stats(df, SMALL)
    for name, column in whole.columns.items():
        np.testing.assert_array_equal(merged.columns[name].counts, column.counts)
        assert merged.columns[name].null_count == column.null_count
    broker = GaussianCopula()
    broker.fit_marginals(received(merged, len(df)))
    sent_two = [broker.dependence_stats(p) for p in parts]
    merged_two = reduce(
        SufficientStats.merge, [received(s, len(p)) for s, p in zip(sent_two, parts, strict=True)]
    )
    expected = reduce(SufficientStats.merge, sent_two).dependence
    assert merged_two.dependence is not None and expected is not None
    assert merged_two.dependence.n == len(df)
    for name in ("pair_n", "pair_sum", "pair_sum_sq", "sum_zz"):
        np.testing.assert_array_equal(getattr(merged_two.dependence, name), getattr(expected, name))
