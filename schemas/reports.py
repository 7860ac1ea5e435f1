"""Typed results of the long jobs, as the CLI prints them (``--json``) and as one layer hands
them to another: a training epoch, a fine-tuning round.

Metric tables are ``{metric name: value}`` (``ndcg@10``, ``auc_click``, ...) as computed by
``stream_app.core.metrics``; NaN where a metric is undefined (e.g. no purchases).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
