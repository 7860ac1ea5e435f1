"""Recommendations (topic ``recommendations``, key = user_id) and model-update notices."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import SCHEMA_VERSION, Id, Timestamp

REDELIVERY_HEADER = "streamrec.redelivery"
"""Kafka header (value ``true``) on a recommendation whose trigger event the worker had
already applied: a redelivery after a crash or a producer retry. The list may differ from the
first one (the model or the catalogue may have changed since); consumers that want one list
per event keep the first per ``trigger_event_id`` and may drop these without looking."""


class RecommendedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: Id
    score: float = Field(description="Final ranking score (multi-task blend of the heads).")
    p_click: Annotated[float, Field(ge=0, le=1)]
    p_purchase: Annotated[float, Field(ge=0, le=1)]
    interest: int = Field(
        ge=-1, description="Index of the user's interest slot it serves; -1 = exploration."
    )
    because: list[str] = Field(
        default_factory=list,
        description="Item ids from the user's history (same interest slot) that led to it.",
    )


class Recommendation(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    user_id: Id
    trigger_event_id: Id
    model_version: str
    created_at: Timestamp
    latency_ms: float = Field(ge=0, description="Event receipt by the worker -> send.")
    items: list[RecommendedItem]


ModelAction = Literal["publish", "promote", "rollback", "shadow", "shadow-report"]


class ModelUpdate(BaseModel):
    """A notice on ``model-updates``.

    - ``publish`` / ``promote`` / ``rollback``: CURRENT changed to ``model_version`` (from
      ``parent_version``); a worker's own automatic rollback names itself in ``worker``.
    - ``shadow``: workers load ``model_version`` beside the served one and score it, unserved,
      on their next ``events`` live events.
    - ``shadow-report``: one worker's result: ``metrics`` = current_hit_rate,
      shadow_hit_rate, events (scored), evaluated (events whose previous lists from both
      models existed), current_hits, shadow_hits; ``parent_version`` = the served version.

    The fields added with the shadow actions are optional: schema_version stays 1.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    model_version: str
    parent_version: str | None = None
    published_at: Timestamp
    action: ModelAction = "publish"
    metrics: dict[str, float] = Field(default_factory=dict)
    worker: str | None = Field(None, description="The worker that sent it (its own notices).")
    events: int | None = Field(
        None, ge=1, description="shadow: live events to score the shadow version on."
    )
    reason: str | None = Field(None, description="Why (e.g. an automatic rollback's numbers).")
