"""`fedsynth simulate` (rows from a simulation spec) and `fedsynth hybrid` (a fitted model with
knowledge-based overrides). The lead registers the plain functions as commands; `app` holds them
under the same names for use on their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from fedsynth.cli_options import SeedOption
from fedsynth.files import OutputPathError, atomic_path, atomic_write_text, check_outputs
from fedsynth.jobs import MAX_ROWS
from fedsynth.progress import progress_bar
from fedsynth.simulation.hybrid import HybridError, HybridSampler, HybridSpec
from fedsynth.simulation.sampler import SimulationError, Simulator
from fedsynth.simulation.spec import SimulationSpec, SimulationSpecError
from fedsynth.synth.artifact import ArtifactError
from fedsynth.synth.base import Synthesizer
from fedsynth.synth.conditions import ConditionError
from fedsynth.synth.sampling import SamplingError

EXIT_FAILED = 2
OUTPUT_FORMATS = (".parquet", ".csv")

console = Console()
errors = Console(stderr=True, soft_wrap=True)

_EXPECTED = (
    OutputPathError,
    SimulationSpecError,
    SimulationError,
    HybridError,
    ArtifactError,
    ConditionError,
    SamplingError,
)


def simulate(
    spec: Annotated[Path, typer.Argument(help="Simulation spec (YAML).")],
    rows: Annotated[
        int, typer.Option("--rows", min=0, max=MAX_ROWS, help="Number of rows to simulate.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")],
    seed: SeedOption = None,
    schema_out: Annotated[
        Path | None, typer.Option("--schema-out", help="Also write the table's schema (YAML).")
    ] = None,
) -> None:
    """Simulate ROWS rows from declared distributions and dependencies, without real data."""
    _check_output(out)
    try:
        check_outputs({"--out": out, "--schema-out": schema_out}, [spec])
        simulation = SimulationSpec.load(spec)
        with progress_bar(f"simulating {simulation.name}", console=errors) as progress:
            df = Simulator(simulation).sample(rows, seed=seed, progress=progress)
        write_table(df, out)
        if schema_out is not None:
            simulation.table_schema().save(schema_out)
    except _EXPECTED as exc:
        raise _fail(exc) from exc
    console.print(f"simulated {len(df)} rows of {simulation.name!r} into {out}", highlight=False)


def hybrid(
    model_file: Annotated[Path, typer.Argument(help="Model file written by `synth fit`.")],
    overrides: Annotated[
        Path, typer.Option("--overrides", help="YAML: {column: ..., shares: {value: share}}.")
    ],
    rows: Annotated[
        int, typer.Option("--rows", min=0, max=MAX_ROWS, help="Number of rows to sample.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")],
    seed: SeedOption = None,
) -> None:
    """Sample from a fitted model with some categories raised or lowered to chosen shares."""
    _check_output(out)
    try:
        check_outputs({"--out": out}, [model_file, overrides])
        spec = HybridSpec.load(overrides)
        model = Synthesizer.load(model_file)
        with progress_bar("sampling", console=errors) as progress:
            df = HybridSampler.from_spec(model, spec).sample(rows, seed=seed, progress=progress)
        write_table(df, out)
    except _EXPECTED as exc:
        raise _fail(exc) from exc
    console.print(f"sampled {len(df)} rows from {model_file} into {out}", highlight=False)


def simulation_json_schema(
    out: Annotated[Path | None, typer.Option("--out", help="File (default: stdout).")] = None,
) -> None:
    """Export the JSON Schema of simulation specs (for editors and validators)."""
    text = json.dumps(SimulationSpec.json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write atomically as Parquet or CSV, by the file's extension."""
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def _check_output(out: Path) -> None:
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise _fail(ValueError(f"--out {out}: use a name ending in {' or '.join(OUTPUT_FORMATS)}"))


def _fail(exc: BaseException) -> typer.Exit:
    errors.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
    return typer.Exit(EXIT_FAILED)


app = typer.Typer(
    help="Synthesis without real data, and hybrid synthesis with overrides.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("simulate")(simulate)
app.command("hybrid")(hybrid)
app.command("simulation-schema")(simulation_json_schema)
