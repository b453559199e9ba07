"""`fedsynth operator`: submit and follow jobs on the broker with an operator certificate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from fedsynth.jobs import JobSpec, JobSpecError
from fedsynth.listing import print_listing
from fedsynth.operator.client import OperatorClient
from fedsynth.wire.v1 import operator_pb2

app = typer.Typer(help="Operate jobs on a fedsynth broker (needs an operator certificate).")
P = ParamSpec("P")
T = TypeVar("T")


class _Connection:
    client: OperatorClient


connection = _Connection()


@app.callback()
def connect(
    broker: str = typer.Option("127.0.0.1:7443", envvar="FEDSYNTH_BROKER", help="HOST:PORT."),
    ca: Path = typer.Option(Path("pki/ca.pem"), envvar="FEDSYNTH_CA", help="Federation CA."),
    cert: Path = typer.Option(..., envvar="FEDSYNTH_CERT", help="Operator certificate (PEM)."),
    key: Path = typer.Option(..., envvar="FEDSYNTH_KEY", help="Operator key (PEM)."),
    server_name: str | None = typer.Option(None, help="Name to expect in the broker cert."),
) -> None:
    """Connect to the broker over mutual TLS."""
    try:
        connection.client = OperatorClient(
            broker, ca=ca, cert=cert, key=key, server_name=server_name
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as exc:
        _fail(f"broker answered {exc.code().name}: {exc.details()}")


def _jobs(jobs: list[operator_pb2.Job]) -> None:
    print_listing(
        ["job", "name", "topology", "state", "updated", "reason"],
        [[j.job_id, j.name, j.topology, j.state, j.updated_at, j.reason] for j in jobs],
    )


@app.command()
def submit(spec: Path = typer.Argument(..., help="Job spec (YAML).")) -> None:
    """Validate a job spec locally and submit it."""
    try:
        job_spec = JobSpec.load(spec)
    except JobSpecError as exc:
        _fail(str(exc))
    job = _call(connection.client.submit, job_spec)
    typer.echo(f"submitted {job.job_id} (spec sha256 {job.spec_sha256})")


@app.command()
def status(job: str = typer.Argument(..., help="Job id.")) -> None:
    """Show one job."""
    _jobs([_call(connection.client.status, job)])


@app.command("list")
def list_command(state: str = typer.Option("", help="Only jobs in this state.")) -> None:
    """List jobs, and the enrolled suppliers with their last contact."""
    _jobs(_call(connection.client.jobs, state))
    suppliers = Table()
    suppliers.add_column("supplier", no_wrap=True)
    suppliers.add_column("last contact", no_wrap=True)
    for s in _call(connection.client.suppliers):
        suppliers.add_row(s.name, s.last_contact or "never")
    Console().print(suppliers)


@app.command()
def cancel(job: str = typer.Argument(..., help="Job id.")) -> None:
    """Cancel a job; its raw and prepared rows are deleted from the broker."""
    cancelled = _call(connection.client.cancel, job)
    typer.echo(f"{cancelled.job_id} {cancelled.state}")


@app.command()
def releases(job: str = typer.Option("", help="Only candidates of this job.")) -> None:
    """List candidates with their verdicts and reasons, and the releases they became."""
    print_listing(
        ["candidate", "job", "verdict", "release", "reasons"],
        [
            [c.candidate_id, c.job_id, c.verdict, c.release_id or "-", "; ".join(c.reasons)]
            for c in _call(connection.client.candidates, job)
        ],
    )
