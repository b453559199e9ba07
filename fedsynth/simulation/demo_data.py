"""The bundled demo federation's data: three hospitals and a pharmacy drawn from one population.

`python -m fedsynth.simulation.demo_data --out DIR [--rows N] [--seed S]` simulates the
population of `demo/specs/population.yaml` and writes each source of `demo/specs/<source>.yaml`
as `DIR/<source>.csv`, in that source's own names, codes, units and date formats, plus
`DIR/truth.csv` (the true person of every source row, for scoring record linkage only).
The same rows and seed always give the same files. The specs ship with the repository, not
the installed package: outside a checkout, pass `--demo-dir` pointing at its demo/ folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from fedsynth.files import atomic_path
from fedsynth.simulation.sampler import Simulator
from fedsynth.simulation.sources import SourceSpec, SourceSpecError, render
from fedsynth.simulation.spec import SimulationSpec, SimulationSpecError

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
POPULATION_SPEC = "population.yaml"
HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")
PHARMACIES = ("pharmacy",)
SOURCES = HOSPITALS + PHARMACIES
TRUTH_FILE = "truth.csv"
DEFAULT_ROWS = 2000
DEFAULT_SEED = 20240630
EXIT_USAGE = 2

_console = Console(stderr=True)


@dataclass(frozen=True)
class DemoSource:
    """Where one generated source lies and the specs that prepare it."""

    name: str
    data: Path
    prep_spec: Path
    schema: Path
    rows: int


def generate(
    out: Path,
    *,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    demo_dir: Path = DEMO_DIR,
) -> list[DemoSource]:
    """Write every demo source and the truth file into `out`; return what was written."""
    specs = demo_dir / "specs"
    population_spec = SimulationSpec.load(specs / POPULATION_SPEC)
    written: list[DemoSource] = []
    truth: list[pd.DataFrame] = []
    with _progress() as bar:
        task = bar.add_task("population", total=len(SOURCES) + 1)
        population = Simulator(population_spec).sample(rows, seed=seed)
        for name in SOURCES:
            bar.update(task, advance=1, description=name)
            rendered = render(population, SourceSpec.load(specs / f"{name}.yaml"), seed=seed)
            path = out / f"{name}.csv"
            with atomic_path(path) as tmp:
                rendered.table.to_csv(tmp, index=False)
            truth.append(
                pd.DataFrame(
                    {
                        "source": name,
                        "row": range(len(rendered.persons)),
                        "person": rendered.persons,
                    }
                )
            )
            schema = "schema_pharmacy.yaml" if name in PHARMACIES else "schema.yaml"
            written.append(
                DemoSource(
                    name=name,
                    data=path,
                    prep_spec=demo_dir / "prep" / f"{name}.yaml",
                    schema=demo_dir / schema,
                    rows=len(rendered.table),
                )
            )
        with atomic_path(out / TRUTH_FILE) as tmp:
            pd.concat(truth, ignore_index=True).to_csv(tmp, index=False)
        bar.update(task, advance=1, description="done")
    return written


def main(
    out: Annotated[Path, typer.Option("--out", help="Directory for the generated CSV files.")],
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Persons in the simulated population.")
    ] = DEFAULT_ROWS,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Same seed, same files (0 or more).")
    ] = DEFAULT_SEED,
    demo_dir: Annotated[
        Path, typer.Option("--demo-dir", help="Folder holding specs/, prep/ and the schemas.")
    ] = DEMO_DIR,
) -> None:
    """Generate the demo sources (three hospitals and a pharmacy) from the bundled specs."""
    _check_paths(out, demo_dir)
    try:
        written = generate(out, rows=rows, seed=seed, demo_dir=demo_dir)
    except (SimulationSpecError, SourceSpecError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(
            f"{exc.filename or out}: {exc.strerror or exc}; give --out a folder you may write "
            "to and --demo-dir one you may read"
        )
    for source in written:
        _console.print(
            f"{source.name}: {source.rows} rows -> {source.data} "
            f"(prepare with {source.prep_spec} onto {source.schema})",
            highlight=False,
        )


def _check_paths(out: Path, demo_dir: Path) -> None:
    """Refuse a missing demo folder or a file as --out before any work, naming the fix."""
    population = demo_dir / "specs" / POPULATION_SPEC
    if not population.is_file():
        _fail(
            f"demo spec {population} not found (an installed fedsynth does not include demo/); "
            "pass --demo-dir pointing at the repository's demo/ folder"
        )
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file; give a folder for the CSV files (a missing one is created)")


def _fail(message: str) -> NoReturn:
    """Print one error line and exit 2: these are the caller's paths or specs, not a crash."""
    _console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
    )


if __name__ == "__main__":
    typer.run(main)
