"""The bundled demo sources: generated from the repo's specs, prepared by the repo's prep specs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from fedsynth.prep import PrepSpec, prepare
from fedsynth.prep.linker import Linker
from fedsynth.prep.source import read_raw
from fedsynth.prep.tokens import LinkageSecret
from fedsynth.schema import TableSchema
from fedsynth.simulation import SimulationSpec, Simulator, SourceSpec
from fedsynth.simulation.demo_data import (
    DEMO_DIR,
    HOSPITALS,
    SOURCES,
    TRUTH_FILE,
    generate,
    main,
)
from fedsynth.simulation.sources import render

ROWS = 1500
SEED = 11
SECRET = LinkageSecret(b"demo-test-secret-0123456789abcdef")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out, rows=ROWS, seed=SEED)
    return out


@pytest.fixture(scope="module")
def prepared(demo: Path) -> dict[str, object]:
    results = {}
    for name in SOURCES:
        schema_file = "schema_pharmacy.yaml" if name == "pharmacy" else "schema.yaml"
        schema = TableSchema.load(DEMO_DIR / schema_file)
        spec = PrepSpec.load(DEMO_DIR / "prep" / f"{name}.yaml")
        results[name] = prepare(read_raw(demo / f"{name}.csv"), spec, schema, secret=SECRET)
    return results


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    spec = SimulationSpec.load(DEMO_DIR / "specs" / "population.yaml")
    return Simulator(spec).sample(ROWS, seed=SEED)


def test_every_demo_spec_file_loads() -> None:
    SimulationSpec.load(DEMO_DIR / "specs" / "population.yaml")
    for name in SOURCES:
        assert SourceSpec.load(DEMO_DIR / "specs" / f"{name}.yaml").source == name
        assert PrepSpec.load(DEMO_DIR / "prep" / f"{name}.yaml").source == name
    TableSchema.load(DEMO_DIR / "schema.yaml")
    TableSchema.load(DEMO_DIR / "schema_pharmacy.yaml")


def test_generation_is_deterministic(demo: Path, tmp_path: Path) -> None:
    generate(tmp_path, rows=ROWS, seed=SEED)
    for name in [*SOURCES, "truth"]:
        assert (tmp_path / f"{name}.csv").read_bytes() == (demo / f"{name}.csv").read_bytes()


def test_sources_use_their_own_names_codes_and_date_formats(demo: Path) -> None:
    a, b, c = (read_raw(demo / f"{n}.csv") for n in HOSPITALS)
    assert {"surname", "dob", "weight_kg"} <= set(a.columns)
    assert {"family_name", "date_of_birth", "weight_lb", "gender"} <= set(b.columns)
    assert {"lname", "birthdate", "weight_g"} <= set(c.columns)
    assert set(a["sex"]) == {"F", "M"}
    assert set(b["gender"]) == {"1", "2"}
    assert set(c["sex"]) == {"female", "male"}
    assert a["dob"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert b["date_of_birth"].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    months = c["birthdate"].str.slice(0, 2).astype(int)
    assert months.between(1, 12).all() and c["birthdate"].str.slice(3, 5).astype(int).max() > 12
    assert (b["glucose_mg_dl"] == "NA").any() and (c["glucose"] == "NULL").any()


def test_each_hospital_maps_onto_the_common_schema_with_few_quarantined_rows(
    prepared: dict[str, object],
) -> None:
    schema = TableSchema.load(DEMO_DIR / "schema.yaml")
    for name in SOURCES:
        report = prepared[name].report
        assert report.rows_out > 0, name
        assert report.rows_quarantined <= 0.01 * report.rows_in, (name, report)
    for name in HOSPITALS:
        table = prepared[name].prepared
        assert [c for c in schema.names if c in table.columns] == [
            c.name for c in schema.columns if c.kind != "identifier"
        ]
        assert set(table["sex"].dropna()) == {"female", "male"}


def test_units_are_harmonized_to_the_population_values(
    prepared: dict[str, object], population: pd.DataFrame
) -> None:
    for name in HOSPITALS:
        table = prepared[name].prepared
        assert table["weight_kg"].mean() == pytest.approx(population["weight_kg"].mean(), abs=2.5)
        assert table["height_cm"].mean() == pytest.approx(population["height_cm"].mean(), abs=1.5)
        assert table["glucose_mmol"].mean() == pytest.approx(
            population["glucose_mmol"].mean(), abs=0.4
        )
        share = (table["diagnosis"] == "hypertension").mean()
        assert share == pytest.approx((population["diagnosis"] == "hypertension").mean(), abs=0.06)


def test_stay_length_from_discharge_dates_matches_stated_lengths(
    prepared: dict[str, object],
) -> None:
    b = prepared["hospital_b"].prepared["length_of_stay"].astype(float)
    a = prepared["hospital_a"].prepared["length_of_stay"].astype(float)
    assert b.min() >= 1 and b.mean() == pytest.approx(a.mean(), abs=0.6)


def test_record_linkage_finds_the_pharmacy_customers_in_a_hospital(
    demo: Path, prepared: dict[str, object]
) -> None:
    left = prepared["hospital_a"].prepared
    right = prepared["pharmacy"].prepared
    result = Linker(0.8).link(left, right)
    truth = pd.read_csv(demo / TRUTH_FILE)
    person = {s: g.set_index("row")["person"] for s, g in truth.groupby("source")}
    linked_a = person["hospital_a"].to_numpy()[result.pairs["left"].to_numpy()]
    linked_p = person["pharmacy"].to_numpy()[result.pairs["right"].to_numpy()]
    correct = int((linked_a == linked_p).sum())
    in_both = len(set(person["hospital_a"]) & set(person["pharmacy"]))
    assert correct / len(result.pairs) >= 0.95
    assert correct / in_both >= 0.85
    assert result.report.fuzzy_matches > 0


def test_identifiers_carry_realistic_errors(population: pd.DataFrame) -> None:
    spec = SourceSpec.load(DEMO_DIR / "specs" / "hospital_b.yaml")
    rendered = render(population, spec, seed=SEED)
    true_last = population["last_name"].to_numpy()[rendered.persons]
    differs = (rendered.table["family_name"].to_numpy() != true_last).mean()
    assert 0.01 < differs < 0.15
    dates = rendered.table["date_of_birth"]
    true_dates = population["birth_date"].dt.strftime("%d/%m/%Y").to_numpy()[rendered.persons]
    assert 0.0 < (dates.to_numpy() != true_dates).mean() < 0.1
    assert all(re.fullmatch(r"\d{2}/\d{2}/\d{4}", d) for d in dates)


def test_the_module_entry_point_writes_every_source(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "fedsynth.simulation.demo_data"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path), "--rows", "200"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for name in SOURCES:
        assert len(pd.read_csv(tmp_path / f"{name}.csv")) > 20
    assert "hospital_b: " in done.stderr


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("demo_dir", "specs/population.yaml not found (an installed fedsynth does not include"),
        ("out", "is a file; give a folder for the CSV files"),
    ],
)
def test_a_missing_demo_folder_or_a_file_as_out_is_one_error_line_naming_the_fix(
    tmp_path: Path, where: str, named: str
) -> None:
    app = typer.Typer()
    app.command()(main)
    out, demo_dir = tmp_path / "out", DEMO_DIR
    if where == "demo_dir":
        demo_dir = tmp_path / "installed"  # what a non-editable install finds: no demo/
    else:
        out.write_text("not a folder\n")
    result = CliRunner().invoke(app, ["--out", str(out), "--demo-dir", str(demo_dir)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert named in result.output
    if where == "demo_dir":
        assert "pass --demo-dir pointing at the repository's demo/ folder" in result.output
