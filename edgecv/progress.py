"""Progress bars for the steps that are not Keras training (conversion, evaluation)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

T = TypeVar("T")

# Progress and status go to stderr: stdout is kept for --json output.
console = Console(stderr=True)


def track(items: Iterable[T], description: str, label=str) -> Iterable[T]:
    """Yield items while a bar shows which one is being worked on."""
    items = list(items)
    columns = [SpinnerColumn(), TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[item]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(description, total=len(items), item="")
        for item in items:
            progress.update(task, item=label(item))
            yield item
            progress.advance(task)


def _counting(unit: str) -> list:
    return [SpinnerColumn(), TextColumn("{task.description:<14}"), TextColumn(f"{{task.completed}} {unit}"),
            TimeElapsedColumn()]


def _transient_off() -> bool:
    """A transient spinner leaves nothing but a blank line where stderr is not a terminal (a log, a
    test): that line would come before a one-line error."""
    return not console.is_terminal


@contextmanager
def track_count(description: str, unit: str = "images"):
    """A spinner with a running count; yields advance(n)."""
    with Progress(*_counting(unit), console=console, transient=True, disable=_transient_off()) as progress:
        task = progress.add_task(description, total=None)
        yield lambda n: progress.advance(task, n)


@contextmanager
def track_stages(unit: str):
    """One spinner line per named phase with its running count; yields update(phase, count)."""
    with Progress(*_counting(unit), console=console, transient=True, disable=_transient_off()) as progress:
        tasks = {}

        def update(phase: str, count: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=None)
            progress.update(tasks[phase], completed=count)

        yield update
