"""Progress bars for long reads, fits and transfers, shown on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

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

Update = Callable[[int, int | None], None]
"""Reports (done, total) to a bar; a total of None means not known yet."""


class ProgressFactory(Protocol):
    """Opens a bar for one long step: `with factory("upload x", unit="bytes") as update:`."""

    def __call__(self, description: str, *, unit: str = "steps") -> AbstractContextManager[Update]:
        """A context whose value takes (done, total) updates."""
        ...


@contextlib.contextmanager
def no_progress(description: str, *, unit: str = "steps") -> Iterator[Update]:
    """A ProgressFactory that shows nothing (library use, tests, daemons without a terminal)."""
    yield lambda done, total: None


@contextlib.contextmanager
def progress_bar(description: str, *, console: Console, unit: str = "steps") -> Iterator[Update]:
    """A transient bar fed by callbacks of (done, total); `unit` "bytes" shows sizes and speed.
    Where `console` is no terminal (a log file, a journal) nothing is written, not even the
    empty line a finished bar leaves."""
    if not console.is_terminal:
        with no_progress(description, unit=unit) as update:
            yield update
        return
    if unit == "bytes":
        counters = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    else:
        counters = (MofNCompleteColumn(), TimeElapsedColumn())
    columns = ("[progress.description]{task.description}", BarColumn(), *counters)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
