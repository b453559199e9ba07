"""`fedsynth-consumer`: list, show and pull released synthetic datasets."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from consumer_client.client import (
    OUTPUT_SUFFIXES,
    Client,
    ReleaseNotFound,
    ReleaseVerificationError,
)
from fedsynth.cli_connection import Connection
from fedsynth.files import OutputPathError, atomic_write_text, check_outputs
from fedsynth.listing import print_listing
from fedsynth.schema import Column
from fedsynth.wire.errors import describe_rpc_error
from fedsynth.wire.transfer import TransferIncomplete

EXIT_INCOMPLETE = 1
EXIT_REFUSED = 2
EXIT_UNVERIFIED = 3

app = typer.Typer(
    help="Pull audited, signed synthetic datasets from a fedsynth broker.",
    epilog=(
        "Exit codes: 0 done; 1 a pull was interrupted (run it again to resume); 2 a usage "
        "error, an unusable file or path, or the broker refused the call (e.g. NOT_FOUND, "
        "UNAVAILABLE), as for `fedsynth operator`; 3 the release failed verification and "
        "nothing was written."
    ),
)


@app.callback()
def connect(
    ctx: typer.Context,
    broker: str | None = typer.Option(
        None, envvar="FEDSYNTH_BROKER", help="Broker HOST:PORT. Required."
    ),
    ca: Path = typer.Option(
        Path("pki/ca.pem"), envvar="FEDSYNTH_CA", help="Federation CA certificate."
    ),
    cert: Path | None = typer.Option(
        None, envvar="FEDSYNTH_CERT", help="Your consumer certificate (PEM). Required."
    ),
    key: Path | None = typer.Option(
        None, envvar="FEDSYNTH_KEY", help="Your consumer key (PEM). Required."
    ),
    server_name: str | None = typer.Option(None, help="Name to expect in the broker cert."),
) -> None:
    """Connect with a consumer certificate issued by the federation CA."""
    ctx.obj = Connection[Client](broker, ca, cert, key, server_name)


def _client(ctx: typer.Context) -> Client:
    connection: Connection[Client] = ctx.obj
    return connection.open(ctx, Client)


def _refuse_unusable_pull_out(out: Path, release: str) -> None:
    """Exit 2 when --out is a folder or not a .parquet/.csv name, before --force is weighed:
    forcing would not make either usable."""
    if out.is_dir():
        typer.echo(
            f"error: --out {out} is a directory; name a file in it, e.g. {out / release}.parquet",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        typer.echo(
            f"error: --out {out}: name it *.parquet (as served) or *.csv (converted)", err=True
        )
        raise typer.Exit(EXIT_REFUSED)


def _refuse_existing(out: Path, force: bool) -> None:
    """Exit 2 when `out` exists and --force was not given: a pull never replaces a file
    silently."""
    if out.exists() and not force:
        typer.echo(f"error: --out {out} exists; add --force to replace it", err=True)
        raise typer.Exit(EXIT_REFUSED)


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """List releases as the broker reports them, unverified: `show` and `pull` check a
    release's name, job, topology, synthesizer and size against its signed attestation."""
    print_listing(
        ["release", "name", "job", "topology", "synthesizer", "bytes", "created"],
        [
            [
                r.release_id,
                r.name,
                r.job_id,
                r.topology,
                r.synthesizer,
                str(r.dataset_size),
                r.created_at,
            ]
            for r in _client(ctx).list()
        ],
    )


@app.command()
def show(
    ctx: typer.Context,
    release: str = typer.Argument(..., help="Release id."),
    columns: bool = typer.Option(
        False, "--columns", help="Print the released columns (the attested data dictionary)."
    ),
) -> None:
    """Print a release's verified attestation, or with --columns its data dictionary: each
    column's kind, values or bounds, unit, and description."""
    verified = _client(ctx).show(release)
    if not columns:
        typer.echo(json.dumps(verified.attestation, indent=2, sort_keys=True))
        return
    schema = verified.schema
    if schema is None:
        typer.echo(f"error: release {release} was published without an attested schema", err=True)
        raise typer.Exit(EXIT_REFUSED)
    print_listing(
        ["column", "kind", "values", "unit", "nullable", "description"],
        [
            [
                c.name,
                c.kind,
                column_values(c),
                getattr(c, "unit", None) or "",
                str(c.nullable),
                c.description or "",
            ]
            for c in schema.columns
        ],
    )


def column_values(column: Column) -> str:
    """What values a column holds, as its schema declares: a domain, bounds, or a format."""
    domain = getattr(column, "domain", None)
    if domain:
        return ", ".join(map(str, domain))
    low, high = getattr(column, "min", None), getattr(column, "max", None)
    if low is not None or high is not None:
        return f"{'' if low is None else low} .. {'' if high is None else high}"
    return getattr(column, "format", None) or ""


@app.command()
def pull(
    ctx: typer.Context,
    release: str = typer.Argument(..., help="Release id."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file, .parquet or .csv."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Download a release, verify hash and signatures, then write it to --out."""
    _refuse_unusable_pull_out(out, release)
    _refuse_existing(out, force)
    client = _client(ctx)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress("[progress.description]{task.description}", *columns, console=Console()) as bar:
        # Hidden until the first chunk: a bar of "0/? bytes" says nothing while it verifies.
        task = bar.add_task(release, total=None, visible=False)
        try:
            client.pull_to(
                release,
                out,
                on_progress=lambda done, total: bar.update(
                    task, completed=done, total=total, visible=True
                ),
                # The conversion reads the whole table; say so, not leave a finished bar idle.
                on_convert=lambda: typer.echo(f"converting to CSV: {out}", err=True),
            )
        except (OSError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_REFUSED) from exc
        except TransferIncomplete as exc:
            typer.echo(f"error: {exc}; run the same pull again to resume", err=True)
            raise typer.Exit(EXIT_INCOMPLETE) from exc
        except KeyboardInterrupt as exc:
            typer.echo(
                "interrupted: the bytes received are kept beside --out; run the same pull again "
                "to resume",
                err=True,
            )
            raise typer.Exit(EXIT_INCOMPLETE) from exc
    typer.echo(f"verified and wrote {out}")


@app.command()
def report(
    ctx: typer.Context,
    release: str = typer.Argument(..., help="Release id."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output file for the audit report: .json, or .html for the page."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Write a release's audit report to --out (JSON, or the HTML page), once its hash and the
    broker's signature verify."""
    suffix = out.suffix.lower()
    if suffix not in {".json", ".html"}:
        typer.echo(f"error: --out {out}: name it *.json (report) or *.html (page)", err=True)
        raise typer.Exit(EXIT_REFUSED)
    try:
        check_outputs({"--out": out})
    except OutputPathError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    _refuse_existing(out, force)
    try:
        if suffix == ".html":
            _client(ctx).audit_html_to(release, out)
        else:
            verified = _client(ctx).show(release)
            report = json.dumps(verified.audit_report, indent=2, sort_keys=True) + "\n"
            atomic_write_text(out, report)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    typer.echo(f"verified and wrote the audit report of {release} to {out}")


def main() -> None:
    """Console-script entry point: a refused release exits 3, a broker error 2 (as `fedsynth
    operator` does)."""
    try:
        app()
    except ReleaseVerificationError as exc:
        typer.echo(f"REFUSED: {exc}", err=True)
        raise SystemExit(EXIT_UNVERIFIED) from exc
    except ReleaseNotFound as exc:
        typer.echo(
            f"error: {exc.reason}; run `fedsynth-consumer list` to see the releases it serves",
            err=True,
        )
        raise SystemExit(EXIT_REFUSED) from exc
    except grpc.RpcError as exc:
        typer.echo(f"error: {describe_rpc_error(exc)}", err=True)
        raise SystemExit(EXIT_REFUSED) from exc


if __name__ == "__main__":
    main()
