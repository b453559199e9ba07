"""How a source writes a population down: formats the preparation step can read back."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.prep.standardize import parse_dates, parse_numbers
from fedsynth.simulation import SourceSpec, SourceSpecError, render

FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d"]


def _population(days: list[int], weights: list[float]) -> pd.DataFrame:
    born = [pd.Timestamp(date(1930, 1, 1) + timedelta(days=d)) for d in days]
    return pd.DataFrame(
        {
            "birth_date": pd.Series(born, dtype="datetime64[us]"),
            "weight_kg": pd.Series(weights, dtype="float64"),
            "sex": pd.Categorical(["F", "M"] * (len(days) // 2) + ["F"] * (len(days) % 2)),
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    days=st.lists(st.integers(0, 30_000), min_size=1, max_size=30),
    fmt=st.sampled_from(FORMATS),
)
def test_written_dates_parse_back_with_the_prep_date_format(days: list[int], fmt: str) -> None:
    population = _population(days, [70.0] * len(days))
    spec = SourceSpec.model_validate(
        {
            "source": "s",
            "share": 1.0,
            "columns": [{"name": "dob", "from": "birth_date", "date_format": fmt}],
        }
    )
    rendered = render(population, spec, seed=0)
    parsed = parse_dates(rendered.table["dob"], [fmt])
    assert not parsed.failed.any()
    expected = population["birth_date"].to_numpy()[rendered.persons]
    assert (parsed.values.to_numpy() == expected).all()


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.floats(30, 250), min_size=1, max_size=30),
    scale=st.sampled_from([1.0, 2.2046226218, 1000.0]),
)
def test_scaled_numbers_convert_back_within_the_written_precision(
    weights: list[float], scale: float
) -> None:
    population = _population([0] * len(weights), weights)
    spec = SourceSpec.model_validate(
        {
            "source": "s",
            "share": 1.0,
            "columns": [{"name": "w", "from": "weight_kg", "scale": scale, "decimals": 1}],
        }
    )
    rendered = render(population, spec, seed=0)
    back = parse_numbers(rendered.table["w"], decimal_comma=False, integer=False).values / scale
    expected = population["weight_kg"].to_numpy()[rendered.persons]
    assert np.allclose(back.to_numpy(), expected, atol=0.05 / scale + 1e-9)


def test_codes_missing_token_and_selection_follow_the_spec() -> None:
    population = _population(list(range(0, 4000, 2)), [70.0] * 2000)
    population.loc[::10, "weight_kg"] = np.nan
    spec = SourceSpec.model_validate(
        {
            "source": "s",
            "share": 0.4,
            "missing_token": "NA",
            "columns": [
                {"name": "gender", "from": "sex", "values": {"M": 1, "F": 2}},
                {"name": "w", "from": "weight_kg", "decimals": 0},
            ],
        }
    )
    rendered = render(population, spec, seed=3)
    assert set(rendered.table["gender"]) == {"1", "2"}
    assert (rendered.table["w"] == "NA").mean() == pytest.approx(0.1, abs=0.03)
    assert len(rendered.table) == pytest.approx(800, abs=80)
    assert len(set(rendered.persons)) == len(rendered.persons)


def test_a_source_naming_unknown_population_variables_is_refused() -> None:
    spec = SourceSpec.model_validate(
        {"source": "s", "share": 1.0, "columns": [{"name": "x", "from": "nowhere"}]}
    )
    with pytest.raises(SourceSpecError, match=r"\['nowhere'\]"):
        render(_population([1, 2], [70.0, 80.0]), spec)


def test_an_invalid_source_spec_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "source: bad\nshare: 0\ncolumns:\n  - {name: d, from: x, date_format: '%H:%M'}\n",
        encoding="utf-8",
    )
    with pytest.raises(SourceSpecError) as caught:
        SourceSpec.load(path)
    message = str(caught.value)
    assert "2 problem(s)" in message and "share" in message and "date_format" in message
