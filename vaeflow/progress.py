"""Rich progress bars for training loops; silent when stdout is not a terminal (dvc, CI, Ray)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextmanager
def epoch_bar(label: str, total: int, show: str = "") -> Iterator[Callable[[dict], None]]:
    """Yield `advance(row)`: moves the bar one epoch and shows `row[show]` beside it."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                        console=console, transient=False, disable=not console.is_terminal)
    with progress:
        task = progress.add_task(label, total=total, info="")

        def advance(row: dict) -> None:
            info = f"{show}={row[show]:.3f}" if show and show in row else ""
            progress.update(task, completed=row.get("epoch", 0) + 1, info=info)

        yield advance
