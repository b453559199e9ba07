"""The `fedsynth-supplier` command, run by a data supplier's IT staff.

The agent and the privacy ledger (scipy, matplotlib, the synthesizers) load inside the commands
that use them, so `--help` and `version` answer at once."""

from __future__ import annotations

import logging
import signal
from functools import partial
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.table import Table

from fedsynth.progress import progress_bar
from supplier_agent.config import AgentConfig, AgentConfigError

app = typer.Typer(
    name="fedsynth-supplier",
    help="The supplier agent of a fedsynth federation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("version")
def show_version() -> None:
    """Print the installed fedsynth version."""
    typer.echo(version("fedsynth"))


@app.command("run")
def run(
    config: Path = typer.Option(
        ..., "--config", "-c", help="The agent's YAML config (agent.yaml)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every task."),
) -> None:
    """Dial out to the broker and serve its tasks until interrupted (SIGINT/SIGTERM); one agent
    per state_dir (a second exits 2)."""
    from fedsynth.privacy.ledger import LedgerError, verify_ledger
    from fedsynth.state_lock import StateInUseError, StateLock
    from supplier_agent.agent import AgentRefused, SupplierAgent
    from supplier_agent.dp_tasks import LEDGER_FILE

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)  # reader notes (a dropped empty column) as log lines
    try:
        agent_config = AgentConfig.load(config)
        warnings = agent_config.check_deployment()
    except AgentConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    # Two agents on one state_dir would both take the broker's task stream (each replaces the
    # other's) and run the same tasks against one journal and privacy ledger.
    try:
        lock = StateLock.acquire(agent_config.state_dir, "agent")
    except StateInUseError as exc:
        typer.echo(f"error: {config}: {exc}", err=True)
        raise typer.Exit(2) from exc
    for warning in warnings:
        typer.echo(f"warning: {config}: {warning}", err=True)
    # A damaged ledger stops the agent here, with the reason, not at each DP task.
    try:
        verify_ledger(agent_config.state_dir / LEDGER_FILE)
    except LedgerError as exc:
        lock.release()
        typer.echo(f"error: {config}: {exc}", err=True)
        raise typer.Exit(2) from exc
    # Bars show on a terminal; under systemd or a container runtime the log lines carry it all.
    bars = partial(progress_bar, console=Console(stderr=True))
    try:
        agent = SupplierAgent(agent_config, progress=bars)

        def stop(signum: int, frame: FrameType | None) -> None:
            agent.stop()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        typer.echo(
            f"supplier {agent_config.name!r}: taking tasks from broker {agent_config.broker} "
            f"(state in {agent_config.state_dir}; -v logs each task; Ctrl-C stops)",
            err=True,
        )
        agent.run()
    except AgentRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        lock.release()


@app.command("budget")
def budget(
    config: Path = typer.Option(
        ..., "--config", "-c", help="The agent's YAML config (agent.yaml)."
    ),
) -> None:
    """Privacy budget of every source: the cap, what DP jobs spent, and what is left."""
    from fedsynth.privacy.ledger import LedgerError, PrivacyLedger
    from supplier_agent.dp_tasks import LEDGER_FILE

    try:
        agent_config = AgentConfig.load(config)
    except AgentConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    path = agent_config.state_dir / LEDGER_FILE
    table = Table("source", "cap epsilon", "cap delta", "charges", "spent epsilon", "left")
    for source in sorted(agent_config.sources):
        cap = agent_config.privacy_cap_for(source)
        if cap is None:
            table.add_row(source, "none: DP tasks refused", "", "", "", "")
            continue
        try:
            book = PrivacyLedger(path, supplier=agent_config.name, cap=cap)
        except LedgerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        location = agent_config.source(source).location()
        spent = book.spent(source, location=location)
        table.add_row(
            source,
            f"{cap.epsilon:g}",
            f"{cap.delta:g}",
            str(len(book.history(source, location=location))),
            f"{spent.epsilon:.4g}",
            f"{book.remaining_epsilon(source, location=location):.4g}",
        )
    Console(soft_wrap=True).print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
