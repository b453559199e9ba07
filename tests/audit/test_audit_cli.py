"""`fedsynth audit` end to end on files: exit codes, written reports, clear input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from fedsynth.audit import AuditReport
from fedsynth.audit.cli import audit
from fedsynth.schema import TableSchema

runner = CliRunner()


def _app() -> typer.Typer:
    """The command registered the way the main `fedsynth` app registers it."""
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("audit")(audit)
    return app


@pytest.fixture
def files(
    tmp_path: Path,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    independent: pd.DataFrame,
    schema: TableSchema,
) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "holdout", "fresh", "copy")}
    train.to_csv(paths["train"], index=False)
    holdout.to_csv(paths["holdout"], index=False)
    independent.to_csv(paths["fresh"], index=False)
    train.to_parquet(paths["copy"].with_suffix(".parquet"))
    paths["copy"] = paths["copy"].with_suffix(".parquet")
    paths["schema"] = tmp_path / "schema.yaml"
    schema.save(paths["schema"])
    return paths


def _args(files: dict[str, Path], synthetic: str, out: Path) -> list[str]:
    return [
        "audit",
        "--real", str(files["train"]),
        "--synthetic", str(files[synthetic]),
        "--schema", str(files["schema"]),
        "--holdout", str(files["holdout"]),
        "--target", "diagnosis",
        "--json", str(out / "report.json"),
        "--html", str(out / "report.html"),
    ]  # fmt: skip


def test_passing_audit_exits_zero_and_writes_both_reports(files, tmp_path: Path) -> None:
    result = runner.invoke(_app(), _args(files, "fresh", tmp_path))
    assert result.exit_code == 0, result.output
    report = AuditReport.from_json((tmp_path / "report.json").read_text())
    assert report.verdict == "pass"
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == "pass"
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_failing_audit_exits_three_and_names_the_failed_checks(files, tmp_path: Path) -> None:
    result = runner.invoke(_app(), _args(files, "copy", tmp_path))
    assert result.exit_code == 3, result.output
    assert "FAILED privacy.membership_auc" in result.output
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == "fail"


def test_bad_policy_exits_two_naming_the_file_and_field(files, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_detection_auc: high\n")
    args = [*_args(files, "fresh", tmp_path), "--policy", str(policy)]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 2
    assert "policy.yaml" in result.output and "max_detection_auc" in result.output
    assert not (tmp_path / "report.json").exists()


def test_policy_that_is_not_utf8_is_refused_naming_the_file(files, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(b"seed: 3\n# caf\xff\n")
    result = runner.invoke(_app(), [*_args(files, "fresh", tmp_path), "--policy", str(policy)])
    assert result.exit_code == 2
    assert f"{policy}: not UTF-8 text (byte 0xff at offset 13)" in result.output
    assert "Traceback" not in result.output


def test_real_rows_breaking_the_schema_point_to_fedsynth_validate(
    files, tmp_path: Path, train: pd.DataFrame
) -> None:
    broken = train.astype({"age": "Float64"})
    broken.loc[broken.index[3], "age"] = 300
    broken.to_csv(files["train"], index=False)
    result = runner.invoke(_app(), _args(files, "fresh", tmp_path))
    assert result.exit_code == 2
    line = next(x for x in result.output.splitlines() if x.startswith("audit:"))
    assert "1 real row(s) break the schema (e.g. row 4, column 'age': above the maximum" in line
    assert f"fedsynth validate {files['train']} --schema {files['schema']} --out " in line
    assert "read_table" not in result.output


def test_synthetic_rows_left_without_free_text_are_audited(
    tmp_path: Path, train: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    document = schema.model_dump(mode="json")
    document["columns"].append({"name": "remarks", "kind": "text", "nullable": False})
    TableSchema.model_validate(document).save(tmp_path / "schema.yaml")
    train.assign(remarks="seen by the nurse").to_csv(tmp_path / "train.csv", index=False)
    independent.assign(remarks=None).to_csv(tmp_path / "synthetic.csv", index=False)
    result = runner.invoke(
        _app(),
        [
            "audit",
            "--real", str(tmp_path / "train.csv"),
            "--synthetic", str(tmp_path / "synthetic.csv"),
            "--schema", str(tmp_path / "schema.yaml"),
            "--json", str(tmp_path / "report.json"),
            "--html", str(tmp_path / "report.html"),
        ],
    )  # fmt: skip
    assert result.exit_code in (0, 3), result.output
    report = AuditReport.from_json((tmp_path / "report.json").read_text())
    assert report.validity.invalid_rows == 0


def test_too_few_valid_synthetic_rows_names_the_commonest_failures(
    files, tmp_path: Path, independent: pd.DataFrame
) -> None:
    broken = independent.astype({"age": "Float64", "sex": "string"})
    broken["age"] = 130.0
    broken.loc[broken.index[:5], "sex"] = "X"
    broken.to_csv(files["fresh"], index=False)
    result = runner.invoke(_app(), _args(files, "fresh", tmp_path))
    assert result.exit_code == 2
    line = next(x for x in result.output.splitlines() if x.startswith("audit:"))
    assert "synthetic table has 0 valid row(s); an audit needs at least 10" in line
    assert "1500 row(s) broke the schema, most often: column 'age': above the maximum 120" in line
    assert (
        "(1500 row(s)); column 'sex': not one of the declared categories (F, M) (5 row(s))" in line
    )


def test_declared_constraints_are_counted_against_the_synthetic_rows(files, tmp_path: Path) -> None:
    rules = tmp_path / "constraints.yaml"
    rules.write_text("- {kind: predicate, expression: 'age < 50'}\n")
    result = runner.invoke(_app(), [*_args(files, "fresh", tmp_path), "--constraints", str(rules)])
    report = AuditReport.from_json((tmp_path / "report.json").read_text())
    broken = {c.name: c.violations for c in report.validity.checks}
    assert broken and all(n.startswith("constraint.predicate") for n in broken), result.output
    assert next(iter(broken.values())) > 0


def test_a_constraints_file_naming_an_unknown_column_exits_two(files, tmp_path: Path) -> None:
    rules = tmp_path / "constraints.yaml"
    rules.write_text("- {kind: positive, column: nope}\n")
    result = runner.invoke(_app(), [*_args(files, "fresh", tmp_path), "--constraints", str(rules)])
    assert result.exit_code == 2 and "nope" in result.output, result.output


def test_identifier_columns_are_left_out_on_both_sides_with_a_note(
    files, tmp_path: Path, independent: pd.DataFrame
) -> None:
    independent.drop(columns="record").to_csv(files["fresh"], index=False)
    result = runner.invoke(_app(), _args(files, "fresh", tmp_path))
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "left out of the audit" in line]
    assert notes == [
        "note: identifier column(s) ['record'] left out of the audit on both sides: identifiers "
        "and linkage tokens are never modelled or released"
    ]
    report = AuditReport.from_json((tmp_path / "report.json").read_text())
    assert any("['record'] left out of the audit" in n for n in report.notes)


def test_prepared_rows_with_linkage_tokens_are_audited_with_the_released_schema(
    tmp_path: Path,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    independent: pd.DataFrame,
    schema: TableSchema,
) -> None:
    released = schema.model_copy(update={"columns": schema.modelled_columns})
    released.save(tmp_path / "released.yaml")
    document = released.model_dump(mode="json")
    document["columns"].append({"name": "tok_record", "kind": "identifier", "role": "other"})
    TableSchema.model_validate(document).save(tmp_path / "prepared.yaml")
    tokens = {"tok_record": "t", "bf_record": "b", "blk_birth_year": "y"}
    train.drop(columns="record").assign(**tokens).to_parquet(tmp_path / "train.parquet")
    holdout.drop(columns="record").assign(**tokens).to_csv(tmp_path / "holdout.csv", index=False)
    independent.drop(columns="record").to_csv(tmp_path / "synthetic.csv", index=False)
    for schema_file in ("released.yaml", "prepared.yaml"):
        args = [
            "audit",
            "--real", str(tmp_path / "train.parquet"),
            "--holdout", str(tmp_path / "holdout.csv"),
            "--synthetic", str(tmp_path / "synthetic.csv"),
            "--schema", str(tmp_path / schema_file),
            "--json", str(tmp_path / "report.json"),
            "--html", str(tmp_path / "report.html"),
        ]  # fmt: skip
        result = runner.invoke(_app(), args)
        assert result.exit_code == 0, result.output
        assert "tok_record" in result.output and "left out of the audit" in result.output


def test_a_modelled_column_missing_from_the_synthetic_file_is_named_with_the_file(
    files, tmp_path: Path, independent: pd.DataFrame
) -> None:
    independent.drop(columns=["record", "income"]).to_csv(files["fresh"], index=False)
    result = runner.invoke(_app(), _args(files, "fresh", tmp_path))
    assert result.exit_code == 2
    line = next(x for x in result.output.splitlines() if x.startswith("audit:"))
    assert str(files["fresh"]) in line and "missing column(s) ['income']" in line
    assert "record" not in line
