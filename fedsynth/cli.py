"""The `fedsynth` command: schemas, validation, and the tools of every later stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedsynth.cli_options import DEFAULT_ENCODING, DelimiterOption, EncodingOption, printed_notes
from fedsynth.files import OutputPathError, check_outputs
from fedsynth.io import DataFileError, ValidationReport, validate_file
from fedsynth.progress import progress_bar
from fedsynth.schema import SchemaError, TableSchema
from fedsynth.schema_inference import infer_schema

EXIT_QUARANTINED = 3
EXIT_REFUSED = 2

app = typer.Typer(
    name="fedsynth",
    help="Federated synthetic data: prepare, validate, synthesize, audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
schema_app = typer.Typer(help="Propose, check and export table schemas.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_REFUSED) -> typer.Exit:
    """Print `message` to stderr and return the Exit to raise."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def load_schema(path: Path) -> TableSchema:
    """Load a schema for a command, turning problems into a clean exit."""
    try:
        return TableSchema.load(path)
    except SchemaError as exc:
        raise fail(str(exc)) from exc


@schema_app.command("infer")
def schema_infer(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file to learn from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the YAML schema.")],
    name: Annotated[str | None, typer.Option(help="Table name (default: file stem).")] = None,
    delimiter: DelimiterOption = None,
    encoding: EncodingOption = DEFAULT_ENCODING,
    sample_rows: Annotated[int, typer.Option(help="Rows read to infer from.")] = 1_000_000,
) -> None:
    """Propose a schema from DATA for a person to review: kinds, bounds, domains, identifiers."""
    try:
        check_outputs({"--out": out}, [data])
        with printed_notes(errors):
            schema, findings = infer_schema(
                data, name=name, delimiter=delimiter, encoding=encoding, sample_rows=sample_rows
            )
    except (DataFileError, OutputPathError) as exc:
        raise fail(str(exc)) from exc
    schema.save(out)
    table = Table(title=f"proposed schema {schema.name!r} -> {out}")
    for header in ("column", "kind", "role", "nullable", "details"):
        table.add_column(header)
    for column in schema.columns:
        table.add_row(
            column.name, column.kind, column.role.value, str(column.nullable), _details(column)
        )
    console.print(table)
    if findings:
        console.print("[bold yellow]review before sharing:[/]")
        for finding in findings:
            console.print(f"  - {finding.column}: {finding.message}", highlight=False)


@schema_app.command("check")
def schema_check(path: Annotated[Path, typer.Argument(help="Schema YAML or JSON.")]) -> None:
    """Check that a schema document is valid; list every problem otherwise."""
    schema = load_schema(path)
    console.print(f"{path}: valid schema {schema.name!r} with {len(schema.columns)} columns")


@schema_app.command("json-schema")
def schema_json_schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")] = None,
) -> None:
    """Export the JSON Schema of schema documents (for editors and other tools)."""
    text = json.dumps(TableSchema.json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        from fedsynth.files import atomic_write_text

        atomic_write_text(out, text)


@app.command("validate")
def validate(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file to validate.")],
    schema_path: Annotated[Path, typer.Option("--schema", "-s", help="Schema YAML.")],
    quarantine: Annotated[
        Path | None, typer.Option("--quarantine", "-q", help="Where rejected rows go (CSV).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write accepted rows (.parquet or .csv).")
    ] = None,
    delimiter: DelimiterOption = None,
    encoding: EncodingOption = DEFAULT_ENCODING,
) -> None:
    """Validate DATA against a schema; exit 3 when rows were quarantined, 2 when refused."""
    schema = load_schema(schema_path)
    try:
        check_outputs({"--quarantine": quarantine, "--out": out}, [data, schema_path])
        with (
            printed_notes(errors),
            progress_bar(f"validating {data.name}", console=errors, unit="bytes") as progress,
        ):
            report = validate_file(
                data,
                schema,
                quarantine=quarantine,
                out=out,
                delimiter=delimiter,
                encoding=encoding,
                progress=progress,
            )
    except (DataFileError, OutputPathError) as exc:
        raise fail(f"refused: {exc}") from exc
    print_report(report)
    if not report.clean:
        raise typer.Exit(EXIT_QUARANTINED)


def print_report(report: ValidationReport) -> None:
    """Show a validation report as a summary line and a table of broken rules."""
    console.print(
        f"{report.source}: {report.rows_in:,} rows in, {report.rows_accepted:,} accepted, "
        f"{report.rows_quarantined:,} quarantined"
        + (f" -> {report.quarantine}" if report.quarantine and not report.clean else ""),
        highlight=False,
        soft_wrap=True,
    )
    if report.clean:
        return
    table = Table(title="broken rules")
    for header in ("column", "rule", "cells"):
        table.add_column(header)
    for column, rules in sorted(report.issues_by_column.items()):
        for rule, count in sorted(rules.items()):
            table.add_row(column or "(whole row)", rule, f"{count:,}")
    console.print(table)
    examples = Table(title="first issues")
    for header in ("row", "column", "value", "problem"):
        examples.add_column(header)
    for issue in report.examples[:10]:
        examples.add_row(str(issue.row), issue.column, repr(issue.value), issue.message)
    console.print(examples)


def _details(column: object) -> str:
    parts = []
    for key in ("dtype", "min", "max", "format"):
        value = getattr(column, key, None)
        if value is not None:
            parts.append(f"{key}={value}")
    domain = getattr(column, "domain", None)
    if domain is not None:
        parts.append(f"{len(domain)} categories")
    return ", ".join(parts)


def _mount_stages() -> None:
    """Attach the commands of every later stage: prep, synthesis, audit, PKI, operations."""
    from fedsynth.audit.cli import audit
    from fedsynth.operator.cli import app as operator_app
    from fedsynth.prep.cli import app as prep_app
    from fedsynth.prep.cli import link
    from fedsynth.privacy.cli import app as privacy_app
    from fedsynth.security.cli import app as pki_app
    from fedsynth.simulation.cli import hybrid, simulate, simulation_json_schema
    from fedsynth.synth.cli import app as synth_app

    app.add_typer(prep_app, name="prep")
    app.command("link")(link)
    app.add_typer(synth_app, name="synth")
    app.command("simulate")(simulate)
    app.command("hybrid")(hybrid)
    app.command("simulation-schema")(simulation_json_schema)
    app.command("audit")(audit)
    app.add_typer(pki_app, name="pki")
    app.add_typer(operator_app, name="operator")
    app.add_typer(privacy_app, name="privacy")


_mount_stages()


def main() -> None:
    """Console-script entry point: a file the system refuses is an error line, not a traceback."""
    try:
        app()
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}; check the path and its permissions")
        raise SystemExit(EXIT_REFUSED) from exc
