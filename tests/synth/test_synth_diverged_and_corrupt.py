"""A fit that diverges is refused, and model files with impossible contents are refused on load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsynth.schema import TableSchema
from fedsynth.synth import ArtifactError, DPGaussianCopula, Synthesizer, TVAESynthesizer

Make = Callable[..., pd.DataFrame]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("name", ["learning_rate", "max_grad_norm"])
@pytest.mark.parametrize("value", [0.0, -0.1, float("inf"), float("nan"), "fast"])
def test_tvae_refuses_a_step_size_or_clip_that_is_not_positive(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a positive finite number"):
        TVAESynthesizer(**{name: value})


def test_tvae_fit_that_diverges_stops_and_suggests_a_smaller_learning_rate(
    schema: TableSchema, make_patients: Make
) -> None:
    model = TVAESynthesizer(learning_rate=1e6, epochs=5)
    with pytest.raises(ValueError, match=r"diverged.*learning_rate smaller than 1000000.0"):
        model.fit(make_patients(400), schema)


def test_tvae_file_with_non_finite_weights_is_refused_on_load(
    tmp_path: Path, schema: TableSchema, make_patients: Make
) -> None:
    artifact = TVAESynthesizer(epochs=1).fit(make_patients(200), schema).to_artifact()
    name = next(k for k in artifact.arrays if k.startswith("weight:"))
    artifact.arrays[name] = np.full_like(artifact.arrays[name], np.nan)
    path = tmp_path / "diverged.fsm"
    artifact.write(path)
    with pytest.raises(ArtifactError, match="weights are not finite"):
        Synthesizer.load(path)


@pytest.mark.parametrize("array", ["grid_0", "cum_0", "grid_4", "cum_4"])
def test_copula_file_whose_marginal_table_is_one_short_is_refused_on_load(
    array: str, tmp_path: Path, schema: TableSchema, make_patients: Make
) -> None:
    """grid_0 is an empirical (binned) marginal, grid_4 the three-category diagnosis."""
    model, real, rng = DPGaussianCopula(), make_patients(800), np.random.default_rng(0)
    model.start(schema)
    for _ in range(model.rounds_):
        model.absorb(model.measure(real, rng=rng))
    artifact = model.to_artifact()
    assert [m["family"] for m in artifact.body["state"]["marginals"]][::4] == [
        "empirical",
        "categorical",
    ]
    artifact.arrays[array] = artifact.arrays[array][:-1]
    path = tmp_path / "short.fsm"
    artifact.write(path)
    with pytest.raises(ArtifactError, match=f"{path}: .*corrupt or from an incompatible version"):
        Synthesizer.load(path)
