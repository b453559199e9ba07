"""Identifier columns in synthetic rows: fresh, unique surrogate tokens from every model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedsynth.io import validate_file
from fedsynth.schema import TableSchema
from fedsynth.synth import REGISTRY, GaussianCopula
from fedsynth.synth.encoding import surrogate_identifiers

Make = Callable[..., pd.DataFrame]
QUICK = {"tvae": {"epochs": 1}}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_samples_identifiers_as_unique_fresh_tokens(
    name: str, schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(400)
    model = REGISTRY[name](**QUICK.get(name, {})).fit(real, schema)
    out = model.sample(300, seed=5)
    ids = out["record"]
    assert ids.str.fullmatch(r"syn-[0-9a-f]{16}").all()
    assert ids.is_unique and not ids.isin(real["record"]).any()
    assert ids.equals(model.sample(300, seed=5)["record"])
    assert not ids.isin(model.sample(300, seed=6)["record"]).any()
    assert out["note"].isna().all()


def test_synthetic_rows_pass_a_schema_whose_identifier_is_not_nullable(
    tmp_path: Path, make_patients: Make
) -> None:
    columns = [
        {"name": "record", "kind": "identifier", "nullable": False},
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 110},
    ]
    schema = TableSchema.from_dict({"name": "strict", "columns": columns})
    real = make_patients(300)[["record", "age"]]
    path = tmp_path / "synthetic.csv"
    GaussianCopula().fit(real, schema).sample(200, seed=1).to_csv(path, index=False)
    report = validate_file(path, schema)
    assert report.clean and report.rows_accepted == 200


def test_two_sites_sampling_with_one_seed_give_different_identifiers(
    schema: TableSchema, make_patients: Make
) -> None:
    """Suppliers of a `local` job sample their own models with the job's seed; merged rows
    must not share identifiers."""
    first = GaussianCopula().fit(make_patients(400, seed=1), schema).sample(300, seed=7)
    second = GaussianCopula().fit(make_patients(400, seed=2), schema).sample(300, seed=7)
    assert not first["record"].isin(second["record"]).any()


class _CollidingDraws:
    """Stands in for a generator whose first draws repeat one value."""

    def __init__(self) -> None:
        self.calls = 0

    def integers(self, *args: Any, size: int, **kwargs: Any) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            return np.full(size, 7, dtype=np.uint64)
        return np.arange(100, 100 + size, dtype=np.uint64)


def test_surrogate_identifiers_are_redrawn_until_unique() -> None:
    tokens = surrogate_identifiers(4, _CollidingDraws())  # type: ignore[arg-type]
    assert len(set(tokens)) == 4
    assert "syn-0000000000000007" in tokens


def test_surrogates_never_read_as_numbers() -> None:
    """A bare hex token such as 12345e6789012345 is a float literal: at the top of a column,
    pandas 2.3.3's CSV reader crashed the process on it (a release pulled as CSV), and about
    one token in two thousand was all digits."""
    tokens = surrogate_identifiers(200_000, np.random.default_rng(0))
    assert not any(_is_number(t) for t in tokens)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
