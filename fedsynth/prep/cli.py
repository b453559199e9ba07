"""`fedsynth prep run` (prepare one source) and `fedsynth link` (link two prepared tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fedsynth.cli_options import DEFAULT_ENCODING, DelimiterOption, EncodingOption, printed_notes
from fedsynth.expressions import ExpressionError
from fedsynth.files import OutputPathError, atomic_path, atomic_write_text, check_outputs
from fedsynth.prep.linker import (
    LinkageError,
    Linker,
    linked_table,
    person_ids_for,
    stacked_table,
)
from fedsynth.prep.pipeline import output_schema, prepare
from fedsynth.prep.report import write_quarantine
from fedsynth.prep.source import SourceFileError, read_raw
from fedsynth.prep.spec import PrepSpec, PrepSpecError
from fedsynth.prep.tokens import SECRET_FILE_ENV, LinkageSecret, SecretError
from fedsynth.schema import SchemaError, TableSchema

EXIT_QUARANTINED = 3
"""Exit status when rows were quarantined (outputs still written), as `fedsynth validate`."""

app = typer.Typer(help="Prepare a source's data for the common schema.", no_args_is_help=True)
_console = Console(stderr=True, soft_wrap=True)
_USER_ERRORS = (
    PrepSpecError,
    SchemaError,
    SourceFileError,
    SecretError,
    ExpressionError,
    LinkageError,
    OutputPathError,
)


@app.command(
    "run",
    epilog="Exit codes: 0 every row prepared; 3 rows quarantined (the prepared rows, quarantine "
    "and report are still written); 2 refused (nothing written).",
)
def run_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Source CSV or Parquet.")],
    spec_path: Annotated[Path, typer.Option("--spec", help="Prep spec (YAML).")],
    schema_path: Annotated[Path, typer.Option("--schema", help="Common schema (YAML).")],
    out: Annotated[Path, typer.Option("--out", help="Prepared rows (Parquet).")],
    quarantine: Annotated[
        Path, typer.Option("--quarantine", help="Rejected cells with reasons (CSV).")
    ],
    report_path: Annotated[
        Path | None, typer.Option("--report", help="PrepReport as JSON.")
    ] = None,
    schema_out: Annotated[
        Path | None,
        typer.Option(
            "--schema-out",
            help="Also write the prepared rows' schema (no direct identifiers, plus linkage "
            "tokens): the --schema for validating or fitting on --out.",
        ),
    ] = None,
    delimiter: DelimiterOption = None,
    encoding: EncodingOption = DEFAULT_ENCODING,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file",
            envvar=SECRET_FILE_ENV,
            help="File holding the linkage secret (needed when the spec declares linkage).",
        ),
    ] = None,
) -> None:
    """Harmonize, standardize, cleanse and tokenize one source into the common schema; exit 3
    when rows were quarantined, 2 when refused."""
    if out.suffix.lower() not in (".parquet", ".pq"):
        _fail(ValueError(f"--out {out}: prepared rows are written as Parquet; name it *.parquet"))
    try:
        check_outputs(
            {
                "--out": out,
                "--quarantine": quarantine,
                "--report": report_path,
                "--schema-out": schema_out,
            },
            [input_path, spec_path, schema_path, secret_file],
        )
        spec = PrepSpec.load(spec_path)
        schema = TableSchema.load(schema_path)
        secret = None
        if spec.linkage is not None:
            secret = (
                LinkageSecret.from_file(secret_file) if secret_file else LinkageSecret.from_env()
            )
        with printed_notes(_console), _progress() as progress:
            task = progress.add_task("reading", total=3)
            raw = read_raw(input_path, delimiter=delimiter, encoding=encoding)
            progress.update(task, advance=1, description="preparing")
            result = prepare(raw, spec, schema, secret=secret)
            progress.update(task, advance=1, description="writing")
            with atomic_path(out) as tmp:
                result.prepared.to_parquet(tmp, index=False)
            write_quarantine(result.quarantine, quarantine)
            if report_path is not None:
                atomic_write_text(report_path, result.report.model_dump_json(indent=2) + "\n")
            if schema_out is not None:
                output_schema(schema, spec).save(schema_out)
            progress.update(task, advance=1, description="done")
    except _USER_ERRORS as exc:
        _fail(exc)
    r = result.report
    _console.print(
        f"{r.source}: {r.rows_in} rows in, {r.rows_out} prepared, {r.rows_quarantined} "
        f"quarantined, {r.duplicates_removed} duplicates removed -> {out}"
    )
    nulled = [f"{c.column} {c.count}" for c in r.rules if c.rule == "missing_token"]
    if nulled:
        _console.print(
            f"cells read as null for a missing token (the spec's 'missing'): {', '.join(nulled)}",
            markup=False,
        )
    if r.rows_quarantined:
        _console.print(f"quarantined rows and their reasons -> {quarantine}")
        raise typer.Exit(EXIT_QUARANTINED)


@app.command("spec-schema")
def spec_schema_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON Schema.")],
) -> None:
    """Write the JSON Schema of the prep spec document (for editors and validators)."""
    atomic_write_text(out, json.dumps(PrepSpec.json_schema(), indent=2) + "\n")


def link(
    left: Annotated[Path, typer.Option("--left", help="Prepared table of one source.")],
    right: Annotated[Path, typer.Option("--right", help="Prepared table of the other source.")],
    out: Annotated[Path, typer.Option("--out", help="Linked table (Parquet).")],
    threshold: Annotated[
        float, typer.Option("--threshold", min=0.01, max=1.0, help="Lowest Dice score to match.")
    ] = 0.8,
    stacked: Annotated[
        Path | None,
        typer.Option("--stacked", help="Also write both tables stacked, with source and person."),
    ] = None,
    report_path: Annotated[
        Path | None, typer.Option("--report", help="LinkageReport as JSON.")
    ] = None,
    left_name: Annotated[str, typer.Option("--left-name", help="Name of the left source.")] = "a",
    right_name: Annotated[
        str, typer.Option("--right-name", help="Name of the right source.")
    ] = "b",
) -> None:
    """Link two prepared tables on their linkage tokens (no secret is needed or used)."""
    names = (left_name, right_name)
    try:
        check_outputs({"--out": out, "--stacked": stacked, "--report": report_path}, [left, right])
        a, b = _read_prepared("--left", left), _read_prepared("--right", right)
        with _progress() as progress:
            task = progress.add_task("linking", total=4)

            def tell(stage: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=stage)

            result = Linker(threshold).link(a, b, progress=tell)
        table = linked_table(a, b, result.pairs, names=names)
        with atomic_path(out) as tmp:
            table.to_parquet(tmp, index=False)
        if stacked is not None:
            ids = person_ids_for(len(a), len(b), result.pairs, names)
            both = stacked_table({left_name: a, right_name: b}, ids)
            with atomic_path(stacked) as tmp:
                both.to_parquet(tmp, index=False)
        if report_path is not None:
            atomic_write_text(report_path, result.report.model_dump_json(indent=2) + "\n")
    except _USER_ERRORS as exc:
        _fail(exc)
    r = result.report
    _console.print(
        f"{r.matches} matches ({r.exact_matches} exact, {r.fuzzy_matches} fuzzy, "
        f"{r.ambiguous} ambiguous); unmatched {r.unmatched_left} left, {r.unmatched_right} "
        f"right -> {out}"
    )


def _read_prepared(option: str, path: Path) -> pd.DataFrame:
    """The prepared table `option` names, or one SourceFileError saying what to give instead."""
    if not path.is_file():
        raise SourceFileError(
            f"{option} {path}: no such file; give a table written by `fedsynth prep run`"
        )
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceFileError(
            f"{option} {path}: not a Parquet file; run `fedsynth prep run` first, which writes "
            "the prepared table (with its linkage tokens) as Parquet, and link that"
        ) from exc


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
    )


def _fail(exc: Exception) -> None:
    _console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=2)
