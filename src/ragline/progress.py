"""Progress bars and notices on stderr, so stdout stays clean for data."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["notice", "progress_bar"]


@contextmanager
def progress_bar(
    description: str, total: float | None, *, enabled: bool = True, unit: str = "items"
) -> Iterator[Callable[[float], None]]:
    """Yield `advance(n)`; draws a rich progress bar on stderr while enabled and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    counter = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        counter,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def notice(message: str) -> None:
    """A one-line notice for the user on stderr."""
    print(f"ragline: {message}", file=sys.stderr, flush=True)
