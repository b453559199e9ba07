"""The `simulate`, `hybrid` and `simulation-schema` commands, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from fedsynth.schema import TableSchema
from fedsynth.simulation.cli import app
from fedsynth.synth import SequentialCART

SPEC = """
name: small
variables:
  - {name: age, type: numerical, dtype: int, distribution: {family: uniform, low: 20, high: 80}}
  - name: sick
    type: boolean
    logit: "-4 + 0.05 * age"
  - {name: ward, type: categorical, probabilities: {a: 0.5, b: 0.3, rare: 0.2}}
"""
runner = CliRunner()


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_simulate_writes_the_rows_and_repeats_with_the_seed(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    for name in ("one.parquet", "two.parquet"):
        result = runner.invoke(
            app,
            [
                "simulate",
                str(spec),
                "--rows",
                "300",
                "--out",
                str(tmp_path / name),
                "--seed",
                "5",
                "--schema-out",
                str(tmp_path / "schema.yaml"),
            ],
        )
        assert result.exit_code == 0, result.output
    one = pd.read_parquet(tmp_path / "one.parquet")
    assert len(one) == 300 and list(one.columns) == ["age", "sick", "ward"]
    pd.testing.assert_frame_equal(one, pd.read_parquet(tmp_path / "two.parquet"))
    assert TableSchema.load(tmp_path / "schema.yaml").names == ["age", "sick", "ward"]


def test_simulate_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    result = runner.invoke(
        app, ["simulate", str(_spec(tmp_path)), "--rows", "10", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 10


def test_simulate_refuses_an_invalid_spec_listing_the_problems(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("0.05 * age", "0.05 * agee").replace("0.2}", "0.3}"))
    out = tmp_path / "rows.parquet"
    result = runner.invoke(app, ["simulate", str(spec), "--rows", "10", "--out", str(out)])
    assert result.exit_code == 2
    assert (
        "2 problem(s)" in result.output
        and "agee" in result.output
        and "sum to 1.1" in result.output
    )
    assert not out.exists()


def test_simulate_refuses_an_unknown_output_format(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", str(_spec(tmp_path)), "--rows", "10", "--out", str(tmp_path / "x.xlsx")]
    )
    assert result.exit_code == 2 and ".parquet or .csv" in result.output


def test_hybrid_samples_a_model_file_with_overrides(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    schema = TableSchema.from_dict(
        {
            "name": "t",
            "columns": [
                {"name": "ward", "kind": "categorical", "domain": ["a", "b", "rare"]},
                {"name": "age", "kind": "numerical", "min": 0, "max": 100},
            ],
        }
    )
    real = pd.DataFrame(
        {
            "ward": rng.choice(["a", "b", "rare"], 1000, p=[0.6, 0.38, 0.02]),
            "age": rng.uniform(20, 80, 1000),
        }
    )
    SequentialCART().fit(real, schema).save(tmp_path / "model.fsm")
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("column: ward\nshares: {rare: 0.25}\n", encoding="utf-8")
    out = tmp_path / "hybrid.parquet"
    result = runner.invoke(
        app,
        [
            "hybrid",
            str(tmp_path / "model.fsm"),
            "--overrides",
            str(overrides),
            "--rows",
            "400",
            "--out",
            str(out),
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (pd.read_parquet(out)["ward"] == "rare").sum() == 100


def test_simulation_schema_exports_json_schema(tmp_path: Path) -> None:
    out = tmp_path / "simulation.schema.json"
    result = runner.invoke(app, ["simulation-schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["title"] == "SimulationSpec"
