"""`fedsynth synth`: fit a synthesizer on a data file; sample synthetic rows from a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console

from fedsynth.cli_options import (
    DEFAULT_ENCODING,
    DelimiterOption,
    EncodingOption,
    SeedOption,
    printed_notes,
)
from fedsynth.files import OutputPathError, atomic_path, check_outputs
from fedsynth.io import DataFileError, read_table
from fedsynth.jobs import MAX_ROWS
from fedsynth.progress import progress_bar
from fedsynth.schema import SchemaError, TableSchema
from fedsynth.synth.artifact import ArtifactError
from fedsynth.synth.base import (
    REGISTRY,
    Synthesizer,
    check_model_parameters,
    synthesizer_class,
)
from fedsynth.synth.conditions import ConditionError
from fedsynth.synth.constraints import ConstraintError, parse_constraints
from fedsynth.synth.sampling import SamplingError, SamplingShortfall
from fedsynth.synth.stats import StatsError
from fedsynth.yaml12 import load_yaml

EXIT_FAILED = 2
OUTPUT_FORMATS = (".parquet", ".csv")

app = typer.Typer(
    help="Fit synthesizers on real rows and sample synthetic ones.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)

_EXPECTED = (
    OutputPathError,
    ArtifactError,
    ConditionError,
    ConstraintError,
    DataFileError,
    SamplingError,
    SchemaError,
    StatsError,
    KeyError,
    ValueError,
    TypeError,
)


def _fail(exc: BaseException) -> typer.Exit:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    errors.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(EXIT_FAILED)


def _yaml_problem(exc: Exception) -> str:
    """Why YAML text could not be read, in one line: where, and what (PyYAML's own text spans
    several lines; a bad value under an explicit tag such as !!float raises a plain error)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return what if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: {what}"


def parse_params(items: list[str]) -> dict[str, Any]:
    """`name=value` pairs, values read as YAML 1.2 scalars (20 -> int, 5e-1 -> float, true ->
    bool; yes and no stay text)."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {item!r}: write it as name=value, e.g. min_samples_leaf=20")
        try:
            params[name.strip()] = load_yaml(value)
        except Exception as exc:
            raise ValueError(
                f"--param {item!r}: the value is not valid YAML ({_yaml_problem(exc)}); give a "
                "number, true/false or plain text"
            ) from exc
    return params


def build_model(model: str, params: dict[str, Any]) -> Synthesizer:
    """The named model with `params`, refusing a parameter it does not take by name."""
    try:
        check_model_parameters(model, params)
    except ValueError as exc:
        raise ValueError(f"--param {exc}") from None
    return synthesizer_class(model)(**params)


def parse_condition_args(items: list[str]) -> dict[str, Any]:
    """`col=value` or `col=low..high` (either side of .. may be empty) into a conditions map."""
    conditions: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConditionError(f"--condition {item!r}: write it as column=value or column=lo..hi")
        if ".." in value:
            low, _, high = value.partition("..")
            conditions[name] = (low or None, high or None)
        else:
            conditions[name] = value
    return conditions


def read_constraints(path: Path) -> list[Any]:
    """The constraints of a YAML file, or one ConstraintError naming the file and the fix."""
    try:
        items = load_yaml(path.read_text(encoding="utf-8")) or []
    except UnicodeDecodeError as exc:
        raise ConstraintError(f"{path}: not UTF-8 text; save the constraints as UTF-8") from exc
    except OSError as exc:
        raise ConstraintError(f"{path}: cannot read the constraints: {exc.strerror}") from exc
    except Exception as exc:
        raise ConstraintError(
            f"{path}: not valid YAML ({_yaml_problem(exc)}); fix the syntax"
        ) from exc
    if not isinstance(items, list):
        raise ConstraintError(f"{path}: a constraints file is a YAML list")
    return parse_constraints(items, source=str(path))


@app.command("fit")
def fit(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file of real rows.")],
    schema: Annotated[Path, typer.Option("--schema", help="Schema YAML of the table.")],
    out: Annotated[Path, typer.Option("--out", help="Model file to write (e.g. model.fsm).")],
    model: Annotated[
        str, typer.Option("--model", help=f"Synthesizer: one of {sorted(REGISTRY)}.")
    ] = "copula",
    constraints: Annotated[
        Path | None, typer.Option("--constraints", help="YAML list of constraints.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Model parameter name=value; repeatable.")
    ] = None,
    delimiter: DelimiterOption = None,
    encoding: EncodingOption = DEFAULT_ENCODING,
) -> None:
    """Fit a synthesizer on DATA and write it to a model file."""
    try:
        check_outputs({"--out": out}, [data, schema, constraints])
        table_schema = TableSchema.load(schema)
        params = parse_params(param or [])
        if constraints is not None:
            params["constraints"] = read_constraints(constraints)
        synthesizer = build_model(model, params)
        with printed_notes(errors):
            df, report = read_table(data, table_schema, delimiter=delimiter, encoding=encoding)
        if len(df) == 0:
            raise ValueError(f"{data}: no valid rows to fit on")
        if not report.clean:
            errors.print(
                f"{report.rows_quarantined} of {report.rows_in} rows failed validation and are "
                "left out of the fit (run `fedsynth validate` for details)",
                highlight=False,
            )
        with progress_bar(f"fitting {model}", console=errors) as progress:
            synthesizer.fit(df, table_schema, progress=progress)
        synthesizer.save(out)
    except _EXPECTED as exc:
        raise _fail(exc) from exc
    console.print(f"fitted {model} on {len(df)} rows of {data}; model written to {out}")


@app.command("sample")
def sample(
    model_file: Annotated[Path, typer.Argument(help="Model file written by `synth fit`.")],
    rows: Annotated[
        int, typer.Option("--rows", min=0, max=MAX_ROWS, help="Number of rows to sample.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")],
    seed: SeedOption = None,
    condition: Annotated[
        list[str] | None,
        typer.Option("--condition", help="column=value or column=low..high; repeatable."),
    ] = None,
    allow_fewer: Annotated[
        bool,
        typer.Option(
            "--allow-fewer",
            help="When the model rarely meets the conditions, write the rows found instead of "
            "failing, and say how many.",
        ),
    ] = False,
) -> None:
    """Sample synthetic rows from a model file into a Parquet or CSV file."""
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise _fail(ValueError(f"--out {out}: use a name ending in {' or '.join(OUTPUT_FORMATS)}"))
    try:
        check_outputs({"--out": out}, [model_file])
        synthesizer = Synthesizer.load(model_file)
        conditions = parse_condition_args(condition or [])
        with (
            printed_notes(errors, kinds=(SamplingShortfall,)),
            progress_bar("sampling", console=errors) as progress,
        ):
            df = synthesizer.sample(
                rows, seed=seed, conditions=conditions, progress=progress, allow_fewer=allow_fewer
            )
        write_table(df, out)
    except _EXPECTED as exc:
        raise _fail(exc) from exc
    console.print(f"sampled {len(df)} rows from {model_file} into {out}")


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write atomically as Parquet or CSV, by the file's extension."""
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
