"""Rich progress for long work: a bar per stage, a per-epoch table printed as it goes."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from schemas.reports import EpochRow
from stream_app.core.hooks import Hooks


class TrainProgress:
    """Context manager exposing ``.hooks`` (``stream_app.core.hooks.Hooks``) drawn with rich."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}
        self.header_done = False
        self.hooks = Hooks(stage=self.stage, progress=self.progress, epoch=self.epoch)

    def __enter__(self) -> TrainProgress:
        self.bar.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.bar.__exit__(et, ev, tb)

    def stage(self, text: str) -> None:
        for task in self.tasks.values():
            self.bar.update(task, visible=False)
        self.console.print(f"[bold]·[/bold] {text}")

    def progress(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done, total=total)
        if done >= total:
            self.bar.update(self.tasks[name], visible=False)

    def epoch(self, row: EpochRow) -> None:
        if not self.header_done:
            self.console.print(
                f"{'epoch':>5} {'loss':>8} {'valid ndcg@10':>14} "
                f"{'hr@10':>7} {'auc_click':>9} {'sec':>6}"
            )
            self.header_done = True
        v = row.valid
        mark = " *best" if row.best else ""
        self.console.print(
            f"{row.epoch:>5} {row.loss:>8.4f} {v.get('ndcg@10', 0):>14.4f} "
            f"{v.get('hr@10', 0):>7.4f} {v.get('auc_click', 0):>9.4f} "
            f"{row.seconds:>6.1f}{mark}"
        )
