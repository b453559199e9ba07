"""`fedsynth-broker`: run the broker, and verify its audit log."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from broker.auditlog import AuditLog
from broker.config import BrokerConfig, ConfigError
from broker.server import serve
from broker.store import Database
from fedsynth.security.atrest import load_key_file

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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _config(config)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    serve(settings, stop)


@audit_app.command("verify")
def verify_command(config: Path = CONFIG) -> None:
    """Recompute the audit log's chain; exit 1 and list the breaks if any entry was edited or
    removed."""
    settings = _config(config)
    if not settings.database.exists():
        typer.echo(f"error: no broker database at {settings.database}", err=True)
        raise typer.Exit(2)
    db = Database(settings.database)
    try:
        result = AuditLog(
            db, load_key_file(settings.key_file), settings.state_dir / "audit-head.json"
        ).verify()
    finally:
        db.close()
    if result.ok:
        typer.echo(f"audit log intact: {result.entries} entries")
        return
    for problem in result.problems:
        typer.echo(f"BROKEN: {problem}", err=True)
    raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
