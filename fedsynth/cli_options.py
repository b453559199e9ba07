"""Options every command that reads a table shares, defined once so that they cannot drift:
`--delimiter`/`-d` and `--encoding` for CSV input, `--seed` for sampling, and the printing of
what a reader noted about a file (see `fedsynth.io.DataFileNote`) or a sampler about its rows."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from fedsynth.io import DataFileNote

DEFAULT_ENCODING = "utf-8"

DelimiterOption = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        "-d",
        help="Field delimiter of CSV input: one character, '\\t' for a tab (default: sniffed "
        "from the header).",
        show_default=False,
    ),
]
EncodingOption = Annotated[
    str,
    typer.Option(
        "--encoding",
        help="Text encoding of CSV input, a Python codec name (e.g. utf-8, cp1252); a UTF-8 "
        "byte-order mark is skipped.",
    ),
]
SeedOption = Annotated[
    int | None,
    typer.Option("--seed", min=0, help="Seed (0 or more): same seed, same rows."),
]


@contextmanager
def printed_notes(
    console: Console, kinds: tuple[type[Warning], ...] = (DataFileNote,)
) -> Iterator[None]:
    """Print each warning of `kinds` raised inside the block as a `note:` line on `console`
    (instead of Python's warning text), once the block ends without an error; other warnings
    are raised again unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        for kind in kinds:
            warnings.simplefilter("always", kind)
        yield
    for caught_warning in caught:
        if issubclass(caught_warning.category, kinds):
            console.print(f"note: {caught_warning.message}", markup=False, highlight=False)
        else:
            warnings.warn_explicit(
                caught_warning.message,
                caught_warning.category,
                caught_warning.filename,
                caught_warning.lineno,
            )
