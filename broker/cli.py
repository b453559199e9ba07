"""`fedsynth-broker`: run the broker, verify and read its audit log, and read out its own audit
reports."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import typer

from broker.audit_reports import NoBrokerAudit, broker_audit_files
from broker.auditlog import (
    AuditEntry,
    AuditLogGone,
    AuditLogUnreadable,
    EntryFilter,
    read_entries,
    verify_database,
)
from broker.config import BrokerConfig, ConfigError
from fedsynth.files import atomic_write_bytes
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
    """Recompute the audit log's chain, reading the database read-only (a running broker is
    fine); exit 1 and list the breaks if any entry was edited or removed, 2 if the log could not
    be checked at all."""
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


@audit_app.command("show")
def show_command(
    config: Path = CONFIG,
    job: str | None = typer.Option(
        None,
        "--job",
        help="Entries about this job: the job's own, and its tasks', uploads' and releases'.",
    ),
    subject: str | None = typer.Option(
        None, "--subject", help="Entries whose subject is exactly this (an id or a name)."
    ),
    action: str | None = typer.Option(
        None, "--action", help="Entries with this action; * matches any text, e.g. 'job.*'."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Entries at or after this ISO-8601 time, UTC unless it has an offset "
        "(2025-03-01, 2025-03-01T14:00+01:00).",
    ),
    last: int | None = typer.Option(None, "--last", min=1, help="Only the newest N entries."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, not a table."),
) -> None:
    """Print the audit log's entries, oldest first, reading the database read-only (a running
    broker is fine). It does not check the chain: `audit-log verify` does. Exit 2 if the log
    cannot be read, 1 if its table is gone."""
    settings = _config(config)
    if job is not None and subject is not None:
        typer.echo("error: give --job or --subject, not both", err=True)
        raise typer.Exit(2)
    which = EntryFilter(job=job, subject=subject, action=action, since=_since(since))
    try:
        entries = read_entries(settings.database, which, last)
    except AuditLogUnreadable as exc:
        typer.echo(f"error: cannot read the audit log: {exc}", err=True)
        raise typer.Exit(2) from exc
    except AuditLogGone as exc:
        typer.echo(f"BROKEN: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(_as_json(entry), ensure_ascii=False))
    elif entries:
        typer.echo(_table(entries))
    else:
        typer.echo("no entries match", err=True)


@app.command("audit-report")
def audit_report_command(
    job: str = typer.Argument(..., help="Job id (a central or prepared job)."),
    out: Path = typer.Option(..., "--out", help="Folder to write report.json and report.html to."),
    config: Path = CONFIG,
) -> None:
    """Write the broker's full audit of a central or prepared job's candidate: its report
    (report.json) and page with plots (report.html). Its release carries only the summary, as
    these describe the pooled real rows: they are for the broker's operator. Exit 2 if the job
    has no such audit or a file cannot be read."""
    settings = _config(config)
    try:
        files = broker_audit_files(settings, job)
        contents = {name: path.read_bytes() for name, path in files.items()}
    except (NoBrokerAudit, AuditLogUnreadable, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    out.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        atomic_write_bytes(out / name, data)
        typer.echo(str(out / name))


def _since(text: str | None) -> datetime | None:
    """The --since time, timezone-aware (UTC when it gives no offset); exit 2 if it is not one."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        typer.echo(
            f"error: --since {text!r} is not an ISO-8601 time; give e.g. 2025-03-01 or "
            "2025-03-01T14:00:00+01:00",
            err=True,
        )
        raise typer.Exit(2) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _as_json(entry: AuditEntry) -> dict[str, Any]:
    """One `show --json` line: the entry without its MAC, which only `verify` can judge."""
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "detail": entry.detail,
    }


def _table(entries: list[AuditEntry]) -> str:
    """Entries as aligned columns, details as key=value; text that a terminal would not print
    plainly (control characters, escapes) is shown JSON-quoted, so no entry can forge a line."""
    header = ("SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "DETAILS")
    rows = [
        (
            str(e.seq),
            _cell(e.at),
            _cell(e.actor),
            _cell(e.action),
            _cell(e.subject),
            " ".join(f"{_cell(k)}={_value(v)}" for k, v in sorted(e.detail.items())),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in (header, *rows)
    )


def _cell(text: str) -> str:
    """`text` as is if a terminal prints it plainly, else JSON-quoted (escapes visible)."""
    return text if text.isprintable() else json.dumps(text)


def _value(value: object) -> str:
    """A detail value: plain text as is, anything else (or text with spaces, quotes or `=`)
    as JSON."""
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return _cell(value)
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if shown.isprintable() else json.dumps(value, default=str)


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
