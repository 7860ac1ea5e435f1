"""Typed results of the long jobs, as the CLI prints them (``--json``) and as one layer hands
them to another: a training run and its epochs, a fine-tuning round.

Metric tables are ``{metric name: value}`` (``ndcg@10``, ``auc_click``, ...) as computed by
``stream_app.core.metrics``; NaN where a metric is undefined (e.g. no purchases).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.manifest import TrainingData

REPORT = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

Metrics = dict[str, float]


class EpochRow(BaseModel):
    """One training epoch: mean losses and the validation metrics after it."""

    model_config = REPORT

    epoch: int
    loss: float
    parts: Metrics = Field(default_factory=dict, description="Mean loss per task / term.")
    valid: Metrics = Field(default_factory=dict, description="Validation metrics after it.")
    seconds: float
    best: bool = Field(description="The best validation NDCG@10 so far (checkpoint kept).")


class RoundResult(BaseModel):
    """One fine-tuning round: what was decided, why, and the numbers behind it."""

    model_config = REPORT

    decision: Literal["published", "refused", "skipped"]
    reason: str
    version: str | None = Field(description="The version the round published (or refused).")
    parent: str | None = Field(description="CURRENT when the round started.")
    candidate: Metrics = Field(default_factory=dict, description="The new model, held-out slice.")
    current: Metrics = Field(default_factory=dict, description="CURRENT on the same slice.")
    counts: dict[str, int] = Field(default_factory=dict, description="events, train, valid, test")
    epochs: int = 0
    seconds: float = 0.0


class TransferStats(BaseModel):
    """The encoder transfer step (modes top-N and full)."""

    model_config = REPORT

    mode: str
    steps: int
    trainable_params: int
    loss_first: float
    loss_last: float
    seconds: float


class TrainSummary(BaseModel):
    model_config = REPORT

    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    history: list[EpochRow] = Field(default_factory=list)


class TrainingReport(BaseModel):
    """``streamrec train``: the test table (the model beside the baselines, same examples),
    the data, the training run and, when published, the version and its export parity."""

    model_config = REPORT

    split: str
    systems: dict[str, Metrics] = Field(description="Per system: test metrics.")
    data: TrainingData
    train: TrainSummary
    transfer: TransferStats | None = None
    version: str | None = Field(None, description="The published version (None: not published).")
    parity: Metrics = Field(default_factory=dict, description="Per graph: max |onnx - torch|.")
    seconds: float = 0.0
