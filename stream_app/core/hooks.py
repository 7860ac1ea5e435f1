"""Progress callbacks for long work (training, replay, fine-tuning rounds): the CLI draws bars
and tables with them; everything else runs with the silent defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas.reports import EpochRow


def _no_stage(text: str) -> None:
    return None


def _no_progress(name: str, done: int, total: int) -> None:
    return None


def _no_epoch(row: EpochRow) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    stage: Callable[[str], None] = _no_stage  # a named step starts
    progress: Callable[[str, int, int], None] = _no_progress  # (task, done, total)
    epoch: Callable[[EpochRow], None] = _no_epoch  # a training epoch ended

    def prefixed(self, prefix: str) -> Hooks:
        """The same hooks with ``prefix`` before every stage line."""
        stage = self.stage
        return Hooks(lambda text: stage(f"{prefix}{text}"), self.progress, self.epoch)
