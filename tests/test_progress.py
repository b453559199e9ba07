"""Progress bars show on a terminal and write nothing into logs."""

from __future__ import annotations

import io

from rich.console import Console

from fedsynth.progress import progress_bar


def run_bar(console: Console) -> None:
    with progress_bar("upload stats", console=console, unit="bytes") as update:
        update(10, 100)
        update(100, 100)


def test_a_bar_on_a_log_file_writes_nothing() -> None:
    log = io.StringIO()
    for _ in range(3):
        run_bar(Console(file=log, force_terminal=False))
    assert log.getvalue() == ""


def test_a_bar_on_a_terminal_is_drawn() -> None:
    screen = io.StringIO()
    run_bar(Console(file=screen, force_terminal=True, width=80))
    assert "upload stats" in screen.getvalue()
