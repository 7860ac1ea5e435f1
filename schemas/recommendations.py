"""Recommendations (topic ``recommendations``, key = user_id) and model-update notices."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import SCHEMA_VERSION, Id, Timestamp


class RecommendedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: Id
    score: float = Field(description="Final ranking score (multi-task blend of the heads).")
    p_click: Annotated[float, Field(ge=0, le=1)]
    p_purchase: Annotated[float, Field(ge=0, le=1)]
    interest: int = Field(ge=-1, description="Index of the user's interest slot it serves; -1 = exploration.")
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


class ModelUpdate(BaseModel):
    """Published on ``model-updates`` when CURRENT changes (publish, promote or rollback)."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    model_version: str
    parent_version: str | None = None
    published_at: Timestamp
    action: Literal["publish", "promote", "rollback"] = "publish"
    metrics: dict[str, float] = Field(default_factory=dict)
