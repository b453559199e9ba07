"""`fedsynth privacy`: inspect a supplier's privacy ledger; price a DP-SGD run in epsilon."""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedsynth.privacy.spec import BudgetCap

AGENT_CAP_DELTA: float = BudgetCap.model_fields["delta"].default
"""The delta of an agent's privacy_cap when its config gives none: the ledger view prices RDP
spend at the same delta by default, so it reports the epsilon the agent enforces."""

app = typer.Typer(
    help="Privacy budgets: ledgers and accounting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)
_FIX = "; give the agent's <state_dir>/privacy-ledger.sqlite3"


def _positive(value: float) -> float:
    """Option callback: a finite number above 0 (an epsilon, a noise multiplier)."""
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number above 0, got {value:g}")
    return value


def _probability(value: float) -> float:
    """Option callback: a delta, strictly between 0 and 1 (at 0 no RDP curve has an epsilon)."""
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be above 0 and below 1 (e.g. 1e-6), got {value:g}")
    return value


def _sample_rate(value: float) -> float:
    """Option callback: a Poisson sampling rate, batch size over rows, in (0, 1]."""
    if not 0 < value <= 1:
        raise typer.BadParameter(f"must be in (0, 1], batch size / rows; got {value:g}")
    return value


def _ledger_suppliers(path: Path) -> list[str]:
    """Every supplier with charges in the ledger at `path`; exits 2 when it is not a ledger,
    before PrivacyLedger would add its table to some other database."""
    try:
        with closing(sqlite3.connect(path)) as db:
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'charges'"
            ).fetchone():
                raise _fail(f"{path}: a SQLite database but not a privacy ledger{_FIX}")
            rows = db.execute("SELECT DISTINCT supplier FROM charges ORDER BY supplier")
            return [row[0] for row in rows]
    except sqlite3.DatabaseError as exc:
        raise _fail(f"{path}: not a privacy ledger ({exc}){_FIX}") from exc


def _fail(message: str) -> typer.Exit:
    """Print `message` to stderr and return the exit (2: bad input) to raise."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(2)


@app.command()
def ledger(
    path: Annotated[Path, typer.Argument(help="The supplier's ledger (SQLite file).")],
    supplier: Annotated[str, typer.Option(help="Supplier whose charges to show.")],
    cap_epsilon: Annotated[
        float, typer.Option(help="The agent's epsilon cap per source.", callback=_positive)
    ],
    cap_delta: Annotated[
        float, typer.Option(help="The agent's delta cap per source.", callback=_probability)
    ] = AGENT_CAP_DELTA,
) -> None:
    """Spent and remaining (epsilon, delta) of every source in a ledger."""
    from fedsynth.privacy.ledger import PrivacyLedger  # scipy, only for this command

    if not path.is_file():
        raise _fail(f"{path}: no ledger file there{_FIX}")
    held = _ledger_suppliers(path)
    if not held:
        console.print(f"{path}: no DP release has been charged yet", soft_wrap=True)
        return
    if supplier not in held:
        raise _fail(
            f"{path} holds no charges of supplier {supplier!r}, only of "
            f"{', '.join(map(repr, held))}: pass one of them to --supplier"
        )
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
    sample_rate: Annotated[
        float,
        typer.Option(
            help="Poisson sampling rate (batch / rows), in (0, 1].", callback=_sample_rate
        ),
    ],
    noise_multiplier: Annotated[
        float, typer.Option(help="Noise sd over the clipping norm (> 0).", callback=_positive)
    ],
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")],
    delta: Annotated[
        float, typer.Option(help="Target delta, in (0, 1).", callback=_probability)
    ] = 1e-6,
) -> None:
    """Epsilon of a DP-SGD run by the RDP accountant (the figure opacus reports)."""
    from fedsynth.privacy.accountant import subsampled_gaussian_cost  # scipy, only here

    cost = subsampled_gaussian_cost(sample_rate, noise_multiplier, steps)
    console.print(f"epsilon {cost.epsilon_at(delta):.6g} at delta {delta:g}")
