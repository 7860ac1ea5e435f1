"""The worker's read API: the JSON its HTTP endpoints return (the dashboard page reads these).

- ``GET /api/overview``: ``Overview`` (this worker's counters, live hit rate by model version,
  per-second time series);
- ``GET /models``: ``ModelsView`` (the registry's versions, CURRENT and its history, and this
  worker's swaps with times and verdicts);
- ``GET /recommendations/{user_id}``: the ``schemas.recommendations.Recommendation`` last
  published for the user, byte for byte as it went to the topic;
- ``GET /api/users/{user_id}``: ``UserView`` (interests with names and the items behind them,
  recent events, the latest recommendation).

The per-user endpoints are answered by the worker that owns the user's partition (a request to
another worker is forwarded). Timestamps are ISO-8601 UTC; ``schema_version`` versions each
document.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import SCHEMA_VERSION, Id, Timestamp
from schemas.recommendations import Recommendation

_VIEW = ConfigDict(frozen=True, extra="forbid")


class Counters(BaseModel):
    """This worker's totals since it started: the same numbers ``/metrics`` exposes."""

    model_config = _VIEW

    events_in: int = Field(ge=0, description="streamrec_events_in_total")
    recommendations_out: int = Field(ge=0, description="streamrec_recommendations_out_total")
    duplicates: int = Field(ge=0, description="streamrec_duplicate_events_total")
    dlq: dict[str, int] = Field(description="streamrec_dlq_total by reason.")
    model_swaps: int = Field(ge=0, description="streamrec_model_swaps_total")
    model_refusals: int = Field(ge=0, description="streamrec_model_refusals_total")
    catalogue_items: int = Field(ge=0, description="streamrec_catalogue_items")


class HitRate(BaseModel):
    """Live hit rate of the lists one model version made (a user's next event on an item of
    the list shown before it), totals since the worker started."""

    model_config = _VIEW

    version: str
    evaluated: int = Field(ge=0, description="streamrec_online_evaluated_total{version}")
    hits: int = Field(ge=0, description="streamrec_online_hits_total{version}")
    rate: float | None = Field(description="hits / evaluated; None before the first outcome.")


class Series(BaseModel):
    """Per-second columns, oldest first, all of the same length as ``t``. A second without
    any recommendation has no latency (None)."""

    model_config = _VIEW

    t: list[float] = Field(description="Start of each second, epoch seconds.")
    events_per_s: list[int]
    recommendations_per_s: list[int]
    dlq_per_s: list[int]
    latency_p50_ms: list[float | None]
    latency_p99_ms: list[float | None]
    hit_rate: dict[str, list[float | None]] = Field(
        description="By model version: hit rate over the trailing ``hit_window_s`` seconds."
    )
    hit_window_s: int = Field(ge=1)


class Overview(BaseModel):
    model_config = _VIEW

    schema_version: Literal[1] = SCHEMA_VERSION
    worker: str = Field(description="app id @ host : pid")
    generated_at: Timestamp
    started_at: Timestamp
    status: Literal["ok", "starting"]
    model_version: str | None = Field(description="The version this worker serves.")
    counters: Counters
    hit_rate: list[HitRate]
    series: Series


class VersionInfo(BaseModel):
    """One registry version, from its manifest."""

    model_config = _VIEW

    version: str
    parent: str | None
    created_at: Timestamp | None
    status: str = Field(description="published, shadow, refused (a gate's verdict), ablation.")
    verdict: str | None = Field(description="Why it was refused, or its shadow result.")
    metrics: dict[str, float] = Field(description="Its held-out test metrics.")
    current: bool = Field(description="The registry's CURRENT.")


class SwapEntry(BaseModel):
    """Something that happened to the served model on this worker."""

    model_config = _VIEW

    at: Timestamp
    kind: Literal["loaded", "swapped", "refused", "verdict", "rollback"]
    version: str
    previous: str | None = None
    seconds: float | None = Field(None, description="Load + build + warm-up (swaps).")
    verdict: Literal["keep", "roll back", "no verdict"] | None = Field(
        None, description="verdict: the live hit-rate check after a swap."
    )
    hit_rate_before: float | None = None
    hit_rate_after: float | None = None
    outcomes_before: int | None = None
    outcomes_after: int | None = None
    reason: str | None = Field(None, description="Refusals, verdicts, rollbacks: why.")


class ModelsView(BaseModel):
    model_config = _VIEW

    schema_version: Literal[1] = SCHEMA_VERSION
    current: str | None = Field(description="The registry's CURRENT.")
    serving: str | None = Field(description="The version this worker serves.")
    history: list[str] = Field(description="Versions made CURRENT, oldest first (rollback pops).")
    versions: list[VersionInfo] = Field(description="Newest first.")
    swaps: list[SwapEntry] = Field(description="This worker's, oldest first.")


class ItemRef(BaseModel):
    model_config = _VIEW

    item_id: Id
    text: str | None = Field(description="Its catalogue text; None when no longer listed.")
    categories: list[str]


class InterestView(BaseModel):
    """One of the user's interests, named by what the items behind it share."""

    model_config = _VIEW

    interest: int = Field(ge=0, description="The index recommendations name in ``interest``.")
    strength: float = Field(ge=0)
    events: int = Field(ge=0, description="Events that went into it.")
    last_seen: Timestamp | None
    name: str = Field(description="Its shared categories and words, for people.")
    categories: list[str] = Field(description="Categories its items share, most common first.")
    words: list[str] = Field(description="Words its items' texts share, most common first.")
    items: list[ItemRef] = Field(description="The items behind it, newest first.")


class RecentEvent(BaseModel):
    model_config = _VIEW

    item_id: Id
    event_type: Literal["click", "purchase"]
    ts: Timestamp
    interest: int = Field(ge=-1, description="The interest it went into (-1: none any more).")


class UserView(BaseModel):
    model_config = _VIEW

    schema_version: Literal[1] = SCHEMA_VERSION
    user_id: Id
    events: int = Field(ge=0, description="Events applied to the user's state.")
    updated: Timestamp | None = Field(description="Time of the latest event.")
    interests: list[InterestView] = Field(description="Strongest first.")
    recent_events: list[RecentEvent] = Field(description="Newest first.")
    latest: Recommendation | None = Field(
        description="The list last published for the user by this worker (None: none since it "
        "started; the next event makes one)."
    )


class ApiError(BaseModel):
    model_config = _VIEW

    error: str
    user_id: str | None = None
