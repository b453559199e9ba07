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
