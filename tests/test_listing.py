"""Listings print every cell exactly as given, on wide and narrow terminals alike."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fedsynth.listing import WIDE_TERMINAL, print_listing

BRACKETED = ["[kg/m2]", "[low], [high]", "[bold]x[/bold]"]


@pytest.mark.parametrize("width", [WIDE_TERMINAL, WIDE_TERMINAL - 1])
def test_cells_that_look_like_rich_markup_print_as_written(width: int) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, soft_wrap=True, color_system=None)
    print_listing(["unit", "values", "description"], [BRACKETED], console)
    printed = out.getvalue()
    for cell in BRACKETED:
        assert cell in printed
