"""`fedsynth operator`: submit and follow jobs on the broker with an operator certificate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from fedsynth.cli_connection import Connection
from fedsynth.jobs import JobSpec, JobSpecError, JobState
from fedsynth.listing import print_listing
from fedsynth.operator.client import OperatorClient
from fedsynth.wire.errors import describe_rpc_error
from fedsynth.wire.v1 import operator_pb2

EXIT_REFUSED = 2

app = typer.Typer(
    help="Operate jobs on a fedsynth broker (needs an operator certificate).",
    epilog=(
        "Exit codes: 0 done; 2 a usage error, an invalid job spec or unusable certificate, or "
        "the broker refused the call (e.g. NOT_FOUND, PERMISSION_DENIED, UNAVAILABLE), as for "
        "`fedsynth-consumer`."
    ),
)
P = ParamSpec("P")
T = TypeVar("T")


@app.callback()
def connect(
    ctx: typer.Context,
    broker: str = typer.Option("127.0.0.1:7443", envvar="FEDSYNTH_BROKER", help="HOST:PORT."),
    ca: Path = typer.Option(Path("pki/ca.pem"), envvar="FEDSYNTH_CA", help="Federation CA."),
    cert: Path | None = typer.Option(
        None, envvar="FEDSYNTH_CERT", help="Operator certificate (PEM). Required."
    ),
    key: Path | None = typer.Option(
        None, envvar="FEDSYNTH_KEY", help="Operator key (PEM). Required."
    ),
    server_name: str | None = typer.Option(None, help="Name to expect in the broker cert."),
) -> None:
    """Connect to the broker over mutual TLS."""
    ctx.obj = Connection[OperatorClient](broker, ca, cert, key, server_name)


def _client(ctx: typer.Context) -> OperatorClient:
    connection: Connection[OperatorClient] = ctx.obj
    return connection.open(ctx, OperatorClient)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_REFUSED)


def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as exc:
        _fail(describe_rpc_error(exc))


def _jobs(jobs: list[operator_pb2.Job]) -> None:
    print_listing(
        ["job", "name", "topology", "state", "updated", "reason"],
        [[j.job_id, j.name, j.topology, j.state, j.updated_at, j.reason] for j in jobs],
    )


@app.command()
def submit(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help="Job spec (YAML)."),
    again: bool = typer.Option(
        False,
        "--again",
        help="Start the job even while one with this same spec is unfinished (each run spends "
        "the suppliers' privacy budget again).",
    ),
) -> None:
    """Validate a job spec locally and submit it.

    Refused while a job with the same spec is still submitted or running, unless --again:
    a second run by mistake spends the suppliers' privacy budget twice. A submission whose
    reply is lost is retried without starting a second job."""
    try:
        job_spec = JobSpec.load(spec)
    except JobSpecError as exc:
        _fail(str(exc))
    client = _client(ctx)
    if not again:
        unfinished = [
            job
            for state in (JobState.SUBMITTED, JobState.RUNNING)
            for job in _call(client.jobs, state.value)
            if job.spec_sha256 == job_spec.spec_hash
        ]
        if unfinished:
            same = unfinished[0]
            _fail(
                f"job {same.job_id} ({same.name!r}, {same.state} since {same.created_at}) has "
                f"this same spec and has not finished; wait for it, cancel it, or pass --again "
                "to start another run"
            )
    job = _call(client.submit, job_spec)
    typer.echo(f"submitted {job.job_id} (spec sha256 {job.spec_sha256})")


@app.command()
def status(ctx: typer.Context, job: str = typer.Argument(..., help="Job id.")) -> None:
    """Show one job, and each task it gave a supplier: its state and when that supplier's
    agent last called the broker (a task pending at a supplier never seen is why it waits)."""
    found = _call(_client(ctx).status, job)
    _jobs([found])
    if found.tasks:
        print_listing(
            ["task", "supplier", "kind", "state", "supplier last contact", "error"],
            [
                [
                    t.task_id,
                    t.supplier,
                    t.kind,
                    t.state,
                    t.supplier_last_contact or "never",
                    t.error,
                ]
                for t in found.tasks
            ],
        )


@app.command("list")
def list_command(
    ctx: typer.Context, state: str = typer.Option("", help="Only jobs in this state.")
) -> None:
    """List jobs, and the enrolled suppliers with their last contact."""
    _jobs(_call(_client(ctx).jobs, state))
    suppliers = Table()
    suppliers.add_column("supplier", no_wrap=True)
    suppliers.add_column("last contact", no_wrap=True)
    for s in _call(_client(ctx).suppliers):
        suppliers.add_row(s.name, s.last_contact or "never")
    Console().print(suppliers)


@app.command()
def cancel(ctx: typer.Context, job: str = typer.Argument(..., help="Job id.")) -> None:
    """Cancel a job; its raw and prepared rows are deleted from the broker."""
    cancelled = _call(_client(ctx).cancel, job)
    typer.echo(f"{cancelled.job_id} {cancelled.state}")


@app.command()
def releases(
    ctx: typer.Context, job: str = typer.Option("", help="Only candidates of this job.")
) -> None:
    """List candidates with their verdicts and reasons, and the releases they became (a
    withdrawn release is marked so, with its reason)."""
    client = _client(ctx)
    withdrawn = {r.release_id: r.withdrawn_reason for r in _call(client.releases) if r.withdrawn_at}

    def release(candidate: operator_pb2.Candidate) -> str:
        if not candidate.release_id:
            return "-"
        if candidate.release_id in withdrawn:
            return f"{candidate.release_id} (withdrawn: {withdrawn[candidate.release_id]})"
        return candidate.release_id

    print_listing(
        ["candidate", "job", "verdict", "release", "reasons"],
        [
            [c.candidate_id, c.job_id, c.verdict, release(c), "; ".join(c.reasons)]
            for c in _call(client.candidates, job)
        ],
    )


@app.command()
def withdraw(
    ctx: typer.Context,
    release: str = typer.Argument(..., help="Release id."),
    reason: str = typer.Option(..., help="Why (recorded, and told to consumers who ask)."),
) -> None:
    """Stop serving a release: consumers no longer list or pull it. For a disclosure found
    after release; pulled copies are beyond the broker's reach."""
    summary = _call(_client(ctx).withdraw, release, reason)
    typer.echo(f"withdrew {summary.release_id} at {summary.withdrawn_at}")
