"""`fedsynth audit`: audit a synthetic file against real files and write JSON and HTML reports.

Identifier columns (declared with kind identifier: direct identifiers, record numbers, linkage
tokens) are never modelled or released, so each file may hold them or not; they are left out of
the audit, as are the linkage token columns of `fedsynth prep` that a file holds beyond the
schema (prepared rows audited with the released schema). Every other schema column must be in
every file.

Exit status: 0 when the verdict is pass, 3 when it is fail, 2 for unusable input.
"""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsynth.audit.policy import AuditPolicy, PolicyError
from fedsynth.audit.validity import audited_schema, identifiers_note, synthetic_schema
from fedsynth.cli_options import DEFAULT_ENCODING, DelimiterOption, EncodingOption, printed_notes
from fedsynth.files import atomic_write_text, check_outputs
from fedsynth.io import (
    DataFileError,
    DataFileNote,
    ValidationReport,
    csv_delimiter,
    header_layout,
    read_header_line,
    read_raw,
    read_table,
    sniff_delimiter,
)
from fedsynth.prep.tokens import BLOOM_COLUMN, RECORD_TOKEN
from fedsynth.schema import IdentifierColumn, PrivacyRole, SchemaError, TableSchema

EXIT_FAIL = 3
EXIT_BAD_INPUT = 2

app = typer.Typer(help="Audit synthetic data: fidelity, utility, privacy risk, policy verdict.")


def audit(
    real: Annotated[Path, typer.Option("--real", help="Training rows (CSV or Parquet).")],
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Synthetic rows to audit.")],
    schema: Annotated[Path, typer.Option("--schema", help="Table schema (YAML or JSON).")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")],
    html_out: Annotated[Path, typer.Option("--html", help="Where to write the HTML report.")],
    holdout: Annotated[
        Path | None, typer.Option("--holdout", help="Real rows never shown to the synthesizer.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Column to predict for the utility test.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Audit policy YAML (thresholds).")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", help="Threads for fits and neighbour search; -1 = all.")
    ] = 1,
    constraints: Annotated[
        Path | None,
        typer.Option(
            "--constraints",
            help="YAML list of the constraints the synthesizer was given (as for synth fit); "
            "the audit counts the synthetic rows that break them.",
        ),
    ] = None,
    delimiter: DelimiterOption = None,
    encoding: EncodingOption = DEFAULT_ENCODING,
) -> None:
    """Audit SYNTHETIC against REAL (and HOLDOUT); exit 0 on pass, 3 on fail."""
    # scikit-learn, scipy and matplotlib load here, not when `fedsynth --help` mounts this command.
    from fedsynth.audit.html import write_html
    from fedsynth.audit.runner import run
    from fedsynth.synth.cli import read_constraints
    from fedsynth.synth.constraints import ConstraintError

    console = Console(stderr=True, soft_wrap=True)
    try:
        check_outputs(
            {"--json": json_out, "--html": html_out},
            [real, synthetic, schema, holdout, policy, constraints],
        )
        table_schema = TableSchema.load(schema)
        declared = read_constraints(constraints) if constraints is not None else None
        audit_policy = AuditPolicy.load(policy) if policy is not None else AuditPolicy()
        reading = _reading_options(delimiter, encoding)
        files = _FileSchemas(table_schema, delimiter, encoding)
        with printed_notes(console):
            real_df, real_report = read_table(
                real, files.of(real), delimiter=delimiter, encoding=encoding
            )
            _refuse_rejected(real, schema, real_report, reading)
            holdout_df = None
            if holdout is not None:
                holdout_df, holdout_report = read_table(
                    holdout, files.of(holdout), delimiter=delimiter, encoding=encoding
                )
                _refuse_rejected(holdout, schema, holdout_report, reading)
            synthetic_df, synthetic_report = read_table(
                synthetic,
                synthetic_schema(files.of(synthetic)),
                delimiter=delimiter,
                encoding=encoding,
            )
            files.note_left_out()
        report = run(
            real_df,
            synthetic_df,
            table_schema,
            holdout=holdout_df,
            target=target,
            policy=audit_policy,
            synthetic_rejected=synthetic_report,
            progress=True,
            n_jobs=jobs,
            constraints=declared,
        )
    except (SchemaError, PolicyError, DataFileError, ConstraintError, ValueError) as exc:
        console.print(f"audit: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    atomic_write_text(json_out, report.to_json() + "\n")
    write_html(report, html_out)
    for check in report.failed_checks:
        console.print(
            f"FAILED {check.name}: {check.value:.4f} "
            f"({'min' if check.direction == 'min' else 'max'} {check.threshold:g})",
            markup=False,
            highlight=False,
        )
    console.print(f"verdict: {report.verdict}", markup=False, highlight=False)
    if report.verdict == "fail":
        raise typer.Exit(EXIT_FAIL)


class _FileSchemas:
    """The schema each input file is read with: the audited columns, plus the identifier
    columns that file holds (nullable, since they are not audited) and the linkage token
    columns it holds beyond the schema. Remembers what was left out, for the note."""

    def __init__(self, schema: TableSchema, delimiter: str | None, encoding: str) -> None:
        self.schema = schema
        self.delimiter = delimiter
        self.encoding = encoding
        self.identifiers = audited_schema(schema)[1]
        self.left_out: list[str] = list(self.identifiers)

    def of(self, path: Path) -> TableSchema:
        """The schema to read `path` with."""
        header = self._header(path)
        tokens = [h for h in header if h not in self.schema.names and _is_linkage_token(h)]
        self.left_out += [t for t in tokens if t not in self.left_out]
        columns = [
            c.model_copy(update={"nullable": True}) if c.name in self.identifiers else c
            for c in self.schema.columns
            if c.name not in self.identifiers or c.name in header
        ]
        extra = [IdentifierColumn(name=t, role=PrivacyRole.OTHER, nullable=True) for t in tokens]
        return self.schema.model_copy(update={"columns": columns + extra})

    def note_left_out(self) -> None:
        """Say, once, which identifier columns the audit does not look at."""
        if self.left_out:
            warnings.warn(DataFileNote(identifiers_note(self.left_out)), stacklevel=2)

    def _header(self, path: Path) -> list[str]:
        """The file's column names; none for a missing file, which `read_table` then names."""
        if not path.is_file():
            return []
        if path.suffix.lower() in {".parquet", ".pq"}:
            return read_raw(path, max_rows=0).column_names
        line = read_header_line(path, self.encoding)
        if self.delimiter is None:
            return header_layout(path, line, sniff_delimiter(line)).names
        return header_layout(path, line, csv_delimiter(path, self.delimiter)).names


def _is_linkage_token(name: str) -> bool:
    """Whether `name` is a column `fedsynth prep` writes for record linkage (see its tokens)."""
    return name in (RECORD_TOKEN, BLOOM_COLUMN) or name.startswith(("tok_", "blk_"))


def _reading_options(delimiter: str | None, encoding: str) -> str:
    """The CSV options given to `audit`, as they are passed on to a suggested command."""
    given = [
        ("--delimiter", delimiter),
        ("--encoding", None if encoding == DEFAULT_ENCODING else encoding),
    ]
    return "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value is not None)


def _refuse_rejected(path: Path, schema: Path, report: ValidationReport, reading: str) -> None:
    """Refuse real rows that break the schema, naming the first and the command that cleans
    (read with the same CSV options)."""
    if report.clean:
        return
    first = report.examples[0]
    where = f"column {first.column!r}: " if first.column else ""
    clean = path.with_name(f"{path.stem}.clean.parquet")
    quarantine = path.with_name(f"{path.stem}.quarantine.csv")
    raise ValueError(
        f"{path}: {report.rows_quarantined} real row(s) break the schema (e.g. row {first.row}, "
        f"{where}{first.message}). Fix: set them aside with `fedsynth validate {path} "
        f"--schema {schema}{reading} --out {clean} -q {quarantine}` and audit {clean} instead"
    )


app.command("audit")(audit)
