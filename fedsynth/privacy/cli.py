"""`fedsynth privacy`: inspect a supplier's privacy ledger; price a DP-SGD run in epsilon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedsynth.privacy.accountant import subsampled_gaussian_cost
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.spec import BudgetCap

app = typer.Typer(
    help="Privacy budgets: ledgers and accounting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()


@app.command()
def ledger(
    path: Annotated[Path, typer.Argument(help="The supplier's ledger (SQLite file).")],
    supplier: Annotated[str, typer.Option(help="Supplier whose charges to show.")],
    cap_epsilon: Annotated[float, typer.Option(help="The agent's epsilon cap per source.")],
    cap_delta: Annotated[float, typer.Option(help="The agent's delta cap per source.")] = 1e-6,
) -> None:
    """Spent and remaining (epsilon, delta) of every source in a ledger."""
    if not path.is_file():
        console.print(f"[red]{path}: no ledger file there[/red]", soft_wrap=True)
        raise typer.Exit(2)
    book = PrivacyLedger(
        path, supplier=supplier, cap=BudgetCap(epsilon=cap_epsilon, delta=cap_delta)
    )
    table = Table("source", "releases", "epsilon spent", "delta", "epsilon left")
    for source in book.sources():
        spent = book.spent(source)
        table.add_row(
            source,
            str(len(book.history(source))),
            f"{spent.epsilon:.4g}",
            f"{spent.delta:.3g}",
            f"{book.remaining_epsilon(source):.4g}",
        )
    console.print(table)


@app.command()
def dpsgd(
    sample_rate: Annotated[float, typer.Option(help="Poisson sampling rate (batch / rows).")],
    noise_multiplier: Annotated[float, typer.Option(help="Noise sd over the clipping norm.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps.")],
    delta: Annotated[float, typer.Option(help="Target delta.")] = 1e-6,
) -> None:
    """Epsilon of a DP-SGD run by the RDP accountant (the figure opacus reports)."""
    cost = subsampled_gaussian_cost(sample_rate, noise_multiplier, steps)
    console.print(f"epsilon {cost.epsilon_at(delta):.6g} at delta {delta:g}")
