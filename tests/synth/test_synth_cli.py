"""`fedsynth synth fit` and `fedsynth synth sample` from files to files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fedsynth.schema import TableSchema
from fedsynth.synth import sampling
from fedsynth.synth.cli import app, parse_params

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


def _fit(files: tuple[Path, Path], tmp_path: Path, *extra: str) -> tuple[int, str]:
    data, schema_path = files
    args = ["fit", str(data), "--schema", str(schema_path), "--out", str(tmp_path / "m.fsm")]
    result = runner.invoke(app, [*args, *extra])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("text", "value"),
    [("5e-1", 0.5), ("1e6", 1e6), ("-2.5E+3", -2500.0), (".5e1", 5.0), ("20", 20), ("no", "no")],
)
def test_param_values_are_read_as_yaml_1_2(text: str, value: object) -> None:
    assert parse_params([f"epsilon={text}"]) == {"epsilon": value}


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_param_floats_in_any_notation_come_back_as_the_same_float(x: float) -> None:
    for text in (repr(x), f"{x:e}", f"{x:E}"):
        (parsed,) = parse_params([f"p={text}"]).values()
        assert isinstance(parsed, float) and parsed == float(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_any_param_value_parses_or_fails_naming_the_option(text: str) -> None:
    try:
        parse_params([f"p={text}"])
    except ValueError as exc:
        message = str(exc)
        assert message.startswith("--param ") and "\n" not in message


def test_dp_model_takes_epsilon_in_exponent_notation(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    code, output = _fit(files, tmp_path, "--model", "dp-marginal", "--param", "epsilon=5e-1")
    assert code == 0, output


def test_param_that_is_not_yaml_is_refused_in_one_line(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    code, output = _fit(files, tmp_path, "--param", "x=[")
    assert code == 2 and "Traceback" not in output
    assert output.startswith("error: --param 'x=[': the value is not valid YAML (line 1")


def test_constraints_file_with_a_yaml_syntax_error_is_named_in_one_line(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {kind: range, column: age, min: [}\n")
    code, output = _fit(files, tmp_path, "--constraints", str(rules))
    assert code == 2 and "Traceback" not in output
    assert f"{rules}: not valid YAML (line 1, column " in output and "fix the syntax" in output


def test_unknown_param_names_the_models_parameters(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    code, output = _fit(files, tmp_path, "--model", "cart", "--param", "bogus=1")
    assert code == 2
    assert "--param bogus: the 'cart' synthesizer has no such parameter" in output
    assert "min_samples_leaf" in output and "constraints" not in output


def test_unknown_param_of_a_model_without_parameters_says_it_takes_none(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    code, output = _fit(files, tmp_path, "--model", "copula", "--param", "x=1")
    assert code == 2
    assert "--param x: the 'copula' synthesizer has no such parameter; it takes no parameters" in (
        " ".join(output.split())
    )


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("epochs=1.5", "epochs=1.5: the 'tvae' synthesizer takes int for epochs (a float"),
        ("batch_size=abc", "batch_size='abc': the 'tvae' synthesizer takes int for batch_size"),
        ("hidden=true", "hidden=True: the 'tvae' synthesizer takes int for hidden (a bool"),
        ("learning_rate=fast", "learning_rate='fast': the 'tvae' synthesizer takes float"),
    ],
)
def test_a_param_of_the_wrong_type_is_refused_naming_it_and_its_type(
    files: tuple[Path, Path], tmp_path: Path, param: str, said: str
) -> None:
    code, output = _fit(files, tmp_path, "--model", "tvae", "--param", param)
    assert code == 2 and "Traceback" not in output
    assert f"--param {said}" in " ".join(output.split()), output


def test_tvae_fit_that_diverges_exits_2_and_writes_no_model(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    code, output = _fit(
        files,
        tmp_path,
        *("--model", "tvae", "--param", "learning_rate=1000000.0", "--param", "epochs=5"),
    )
    assert code == 2 and "learning_rate smaller than" in output
    assert not (tmp_path / "m.fsm").exists()


def test_tvae_on_a_single_row_is_an_error_line_naming_the_minimum(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = files
    pd.read_csv(data).head(1).to_csv(data, index=False)
    code, output = _fit(files, tmp_path, "--model", "tvae")
    assert code == 2 and "Traceback" not in output
    assert "error: tvae needs at least 2 rows to fit; got 1" in output


def test_negative_seed_is_refused_naming_the_option(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    assert _fit(files, tmp_path)[0] == 0
    args = ["sample", str(tmp_path / "m.fsm"), "--rows", "5", "--out", str(tmp_path / "o.csv")]
    result = runner.invoke(app, [*args, "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output


def test_allow_fewer_writes_the_rows_found_with_a_note(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, schema_path = files
    model = tmp_path / "model.fsm"
    args = ["fit", str(data), "--schema", str(schema_path), "--model", "cart", "--out", str(model)]
    assert runner.invoke(app, args).exit_code == 0
    monkeypatch.setattr(sampling, "DRAWS_PER_ROW", 1)
    monkeypatch.setattr(sampling, "MIN_DRAWS", 0)
    out = tmp_path / "out.csv"
    args = ["sample", str(model), "--rows", "300", "--out", str(out), "--condition", "sex=F"]
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0 and not out.exists()
    assert "only" in refused.output and "of 300 rows" in refused.output
    allowed = runner.invoke(app, [*args, "--allow-fewer"])
    assert allowed.exit_code == 0, allowed.output
    written = pd.read_csv(out)
    assert 0 < len(written) < 300 and (written["sex"] == "F").all()
    assert f"note: only {len(written)} of 300 rows" in allowed.output
    assert f"sampled {len(written)} rows" in allowed.output


@pytest.mark.parametrize("model", ["mvn", "tvae"])
def test_a_category_too_wide_to_one_hot_is_refused_before_the_fit(
    tmp_path: Path, model: str
) -> None:
    """A 10,000-value category made mvn take 5.7 GB and tvae run past ten minutes."""
    schema = TableSchema.model_validate(
        {
            "name": "wide",
            "columns": [
                {"name": "code", "kind": "categorical", "domain": [f"c{i}" for i in range(1001)]},
                {"name": "age", "kind": "numerical", "min": 0, "max": 100},
            ],
        }
    )
    schema_path = tmp_path / "schema.yaml"
    schema.save(schema_path)
    data = tmp_path / "wide.csv"
    pd.DataFrame({"code": [f"c{i}" for i in range(1001)], "age": 40}).to_csv(data, index=False)
    args = ["fit", str(data), "--schema", str(schema_path), "--model", model]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "m.fsm")])
    assert result.exit_code != 0
    assert f"{model} one-hot encodes categories, and column 'code' has 1001 values" in (
        " ".join(result.output.split())
    )
    assert not (tmp_path / "m.fsm").exists()
