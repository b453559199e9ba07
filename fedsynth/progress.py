"""Progress bars for long reads, fits and transfers, shown on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@contextlib.contextmanager
def progress_bar(
    description: str, *, console: Console, unit: str = "steps"
) -> Iterator[Callable[[int, int], None]]:
    """A transient bar fed by callbacks of (done, total); `unit` "bytes" shows sizes and speed."""
    if unit == "bytes":
        counters = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    else:
        counters = (MofNCompleteColumn(), TimeElapsedColumn())
    columns = ("[progress.description]{task.description}", BarColumn(), *counters)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
