"""`fedsynth-consumer`: list, show and pull released synthetic datasets."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from consumer_client.client import Client, ReleaseVerificationError
from fedsynth.listing import print_listing
from fedsynth.wire.transfer import TransferIncomplete

app = typer.Typer(help="Pull audited, signed synthetic datasets from a fedsynth broker.")


class _Settings:
    client: Client


settings = _Settings()


@app.callback()
def connect(
    broker: str = typer.Option(..., help="Broker HOST:PORT."),
    ca: Path = typer.Option(Path("pki/ca.pem"), help="Federation CA certificate."),
    cert: Path = typer.Option(..., help="Your consumer certificate (PEM)."),
    key: Path = typer.Option(..., help="Your consumer key (PEM)."),
    server_name: str | None = typer.Option(None, help="Name to expect in the broker cert."),
) -> None:
    """Connect with a consumer certificate issued by the federation CA."""
    try:
        settings.client = Client(broker, ca=ca, cert=cert, key=key, server_name=server_name)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("list")
def list_command() -> None:
    """List releases."""
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
            for r in settings.client.list()
        ],
    )


@app.command()
def show(release: str = typer.Argument(..., help="Release id.")) -> None:
    """Print a release's verified attestation."""
    verified = settings.client.show(release)
    typer.echo(json.dumps(verified.attestation, indent=2, sort_keys=True))


@app.command()
def pull(
    release: str = typer.Argument(..., help="Release id."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file, .parquet or .csv."),
) -> None:
    """Download a release, verify hash and signatures, then write it to --out."""
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress("[progress.description]{task.description}", *columns, console=Console()) as bar:
        task = bar.add_task(release, total=None)
        try:
            settings.client.pull_to(
                release,
                out,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except (OSError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        except TransferIncomplete as exc:
            typer.echo(f"error: {exc}; run the same pull again to resume", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"verified and wrote {out}")


def main() -> None:
    try:
        app()
    except ReleaseVerificationError as exc:
        typer.echo(f"REFUSED: {exc}", err=True)
        raise SystemExit(3) from exc
    except grpc.RpcError as exc:
        typer.echo(f"error: broker answered {exc.code().name}: {exc.details()}", err=True)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
