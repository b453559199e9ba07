"""Listings on the terminal: a table where it fits, labelled lines where it would not."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

WIDE_TERMINAL = 120
"""Below this many columns, full-width identifier columns would squeeze the other columns to
nothing, so listings print one block of `field: value` lines per item instead."""
IDENTIFIERS = ("release", "job", "candidate")


def print_listing(
    columns: list[str], rows: list[list[str]], console: Console | None = None
) -> None:
    """Print rows as a table on a wide terminal, as blocks of labelled lines otherwise."""
    console = console or Console(soft_wrap=True)
    if console.width < WIDE_TERMINAL:
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                console.print(f"{column}: {value}", highlight=False, markup=False)
            console.print()
        return
    table = Table()
    for column in columns:
        identifier = column in IDENTIFIERS
        table.add_column(
            column,
            no_wrap=identifier,
            min_width=24 if identifier else None,
            overflow="ellipsis" if identifier else "fold",
        )
    for row in rows:
        # Text, not str: Rich would read `[kg/m2]` or `[bold]` in a cell as markup and drop it.
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
