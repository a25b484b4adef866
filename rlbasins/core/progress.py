"""Progress bars for long work (rich), silent when disabled or not on a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _TrainingBar:
    def __init__(self, progress: Progress | None, n_seeds: int, steps_per_seed: int):
        self.progress, self.steps = progress, [0] * n_seeds
        self.task = progress.add_task("training", total=n_seeds * steps_per_seed) if progress else None

    def advance_seed(self, index: int, steps: int) -> None:
        """Seed ``index`` has done ``steps`` env steps."""
        self.steps[index] = max(self.steps[index], steps)
        if self.progress is not None:
            self.progress.update(self.task, completed=sum(self.steps))


@contextmanager
def training_progress(n_seeds: int, steps_per_seed: int, enabled: bool = True) -> Iterator[_TrainingBar]:
    """A bar over all seeds' env steps together."""
    if not enabled:
        yield _TrainingBar(None, n_seeds, steps_per_seed)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("env steps"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=False) as progress:
        yield _TrainingBar(progress, n_seeds, steps_per_seed)


@contextmanager
def task_progress(description: str, total: int, enabled: bool = True) -> Iterator[callable]:
    """A bar over ``total`` items; yields ``advance()``."""
    if not enabled:
        yield lambda n=1: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
