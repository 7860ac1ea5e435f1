"""The ``TrainingReport`` of a ``streamrec train`` run, assembled the same way for either
engine: data and transfer from the prepared run, the loop's summary, test table, version."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from model_export.train import LoopResult
from schemas.manifest import Metrics
from schemas.reports import TrainingReport, TrainSummary

if TYPE_CHECKING:
    from model_export.pipeline import Prepared


def train_summary(result: LoopResult) -> TrainSummary:
    return TrainSummary(
        epochs_run=len(result.history),
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        seconds=round(result.seconds, 1),
        history=result.history,
    )


def training_report(
    prep: Prepared,
    systems: dict[str, Metrics],
    result: LoopResult,
    version: str | None,
    parity: Metrics,
    t_start: float,
) -> TrainingReport:
    """The run's report; ``seconds`` counts from ``t_start`` (before loading the data)."""
    return TrainingReport(
        split=prep.opts.split,
        systems=systems,
        data=prep.data.meta,
        train=train_summary(result),
        transfer=prep.transfer,
        version=version,
        parity=parity,
        seconds=round(time.perf_counter() - t_start, 1),
    )
