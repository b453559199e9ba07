"""`fedsynth synth fit` and `fedsynth synth sample` from files to files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsynth.schema import TableSchema
from fedsynth.synth.cli import app

Make = Callable[..., pd.DataFrame]
runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path, schema: TableSchema, make_patients: Make) -> tuple[Path, Path]:
    data = tmp_path / "patients.csv"
    make_patients(600).to_csv(data, index=False)
    schema_path = tmp_path / "schema.yaml"
    schema.save(schema_path)
    return data, schema_path


def test_fit_then_sample_to_parquet_and_csv(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, schema_path = files
    model = tmp_path / "model.fsm"
    fit = runner.invoke(
        app,
        ["fit", str(data), "--schema", str(schema_path), "--model", "cart", "--out", str(model)],
    )
    assert fit.exit_code == 0, fit.output
    for name in ("out.parquet", "out.csv"):
        result = runner.invoke(
            app, ["sample", str(model), "--rows", "120", "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 120
    assert len(pd.read_csv(tmp_path / "out.csv")) == 120


def test_seed_and_condition_options(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, schema_path = files
    model = tmp_path / "model.fsm"
    runner.invoke(app, ["fit", str(data), "--schema", str(schema_path), "--out", str(model)])
    outputs = []
    for name in ("a.csv", "b.csv"):
        args = ["sample", str(model), "--rows", "50", "--out", str(tmp_path / name), "--seed", "7"]
        args += ["--condition", "sex=F", "--condition", "age=30..40"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append((tmp_path / name).read_text())
    assert outputs[0] == outputs[1]
    df = pd.read_csv(tmp_path / "a.csv")
    assert (df["sex"] == "F").all() and df["age"].between(30, 40).all()


def test_constraints_file_and_model_params(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, schema_path = files
    rules = tmp_path / "constraints.yaml"
    rules.write_text("- kind: inequality\n  low: admission\n  high: discharge\n")
    model = tmp_path / "model.fsm"
    args = ["fit", str(data), "--schema", str(schema_path), "--model", "cart", "--out", str(model)]
    args += ["--constraints", str(rules), "--param", "min_samples_leaf=25"]
    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "out.csv"
    assert (
        runner.invoke(app, ["sample", str(model), "--rows", "300", "--out", str(out)]).exit_code
        == 0
    )
    df = pd.read_csv(out, parse_dates=["admission", "discharge"])
    assert (df["discharge"] >= df["admission"]).all()


def test_bad_inputs_exit_with_a_clear_message(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, schema_path = files
    broken = tmp_path / "broken.fsm"
    broken.write_bytes(b"FSYNTH\x00\x01" + b"\x00" * 10)
    result = runner.invoke(app, ["sample", str(broken), "--rows", "5", "--out", "x.csv"])
    assert result.exit_code == 2 and "truncated" in result.output
    result = runner.invoke(
        app, ["fit", str(data), "--schema", str(schema_path), "--model", "gan", "--out", "m"]
    )
    assert result.exit_code == 2 and "no synthesizer called 'gan'" in result.output
    result = runner.invoke(app, ["sample", str(broken), "--rows", "5", "--out", "x.json"])
    assert result.exit_code == 2 and ".parquet or .csv" in result.output
