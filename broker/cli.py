"""`fedsynth-broker`: run the broker, and verify its audit log."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import grpc
import typer

from broker.auditlog import AuditLogUnreadable, verify_database
from broker.config import BrokerConfig, ConfigError
from fedsynth.security.atrest import load_key_file
from fedsynth.wire.v1 import health_pb2, health_pb2_grpc

app = typer.Typer(help="The fedsynth broker: the federation's trusted third party.")
audit_app = typer.Typer(help="Inspect the broker's hash-chained audit log.")
app.add_typer(audit_app, name="audit-log")

CONFIG = typer.Option(Path("broker.yaml"), "--config", "-c", help="Broker config (YAML).")


def _config(path: Path) -> BrokerConfig:
    try:
        return BrokerConfig.load(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("serve")
def serve_command(config: Path = CONFIG) -> None:
    """Serve over mutual TLS until SIGINT or SIGTERM."""
    # The server pulls in the models (scipy, scikit-learn, torch): only `serve` pays for them.
    from broker.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _config(config)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve(settings, stop)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {config}: cannot serve: {exc}", err=True)
        raise typer.Exit(2) from exc


@audit_app.command("verify")
def verify_command(config: Path = CONFIG) -> None:
    """Recompute the audit log's chain, reading the database read-only; exit 1 and list the breaks
    if any entry was edited or removed, 2 if the log could not be checked at all."""
    settings = _config(config)
    try:
        key = load_key_file(settings.key_file)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: key_file {settings.key_file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        result = verify_database(
            settings.database,
            key,
            settings.state_dir / "audit-head.json",
            key_name=f"key_file ({settings.key_file})",
        )
    except AuditLogUnreadable as exc:
        typer.echo(f"error: cannot check the audit log: {exc}", err=True)
        raise typer.Exit(2) from exc
    if result.ok:
        typer.echo(f"audit log intact: {result.entries} entries")
        return
    for problem in result.problems:
        typer.echo(f"BROKEN: {problem}", err=True)
    raise typer.Exit(1)


@app.command("probe")
def probe_command(
    address: str = typer.Argument("127.0.0.1:8081", help="HOST:PORT of health_listen."),
    timeout: float = typer.Option(3.0, help="Seconds to wait for the answer."),
) -> None:
    """Ask the plaintext health endpoint whether the broker serves; exit 0 if it does, 1 if not.

    For container and systemd health checks; it reaches only the health service.
    """
    # The health port is plaintext by design (DESIGN §5): it answers status and nothing else.
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            typer.echo(f"not serving: {exc.code().name}", err=True)
            raise typer.Exit(1) from exc
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        typer.echo("not serving", err=True)
        raise typer.Exit(1)
    typer.echo("serving")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
