"""JSON Schema documents of every topic's message and of the read API, generated from the
pydantic models in ``schemas`` (never written by hand). ``scripts/json_schemas.py`` writes them
under ``schemas/json/``; a unit test checks the committed files equal a fresh generation.

Topics whose messages come from outside (``events``, ``items``) are described as the worker
accepts them (validation: e.g. ``ts`` as ISO-8601 or epoch ms); those the workers write
(``recommendations``, ``model-updates``, the API documents) as they are written. A dead letter
keeps the original bytes as its value: its schema describes the headers that carry the reason.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from schemas import api, dlq
from schemas.events import EVENT_ADAPTER
from schemas.items import CatalogueItem
from schemas.recommendations import ModelUpdate, Recommendation

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Mode = Literal["validation", "serialization"]


def _model(model: type[BaseModel] | TypeAdapter[Any], mode: Mode) -> dict[str, Any]:
    if isinstance(model, TypeAdapter):
        return model.json_schema(mode=mode)
    return model.model_json_schema(mode=mode)


def _dlq_headers() -> dict[str, Any]:
    names = {
        dlq.ERROR_CLASS: "Exception class, e.g. BadInput.",
        dlq.ERROR_MESSAGE: f"What was wrong (field, expected, got); <= {dlq.MAX_HEADER_MESSAGE}.",
        dlq.ERROR_REASON: "Short class: schema, json, too_large, unknown_item, scoring, ...",
        dlq.SOURCE_TOPIC: "Topic the original message came from.",
        dlq.SOURCE_PARTITION: "Its partition (decimal).",
        dlq.SOURCE_OFFSET: "Its offset (decimal).",
    }
    return {
        "title": "DeadLetterHeaders",
        "description": "Kafka headers of a dead letter (UTF-8 values); the message value is "
        "the original bytes, unchanged.",
        "type": "object",
        "properties": {k: {"type": "string", "description": v} for k, v in names.items()},
        "required": list(names),
    }


def documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every topic message and API document."""
    models: dict[str, tuple[type[BaseModel] | TypeAdapter[Any], Mode, str]] = {
        "topic.events": (EVENT_ADAPTER, "validation", "A user event (key = user_id)."),
        "topic.items": (
            CatalogueItem,
            "validation",
            "A catalogue item (compacted, key = item_id).",
        ),
        "topic.recommendations": (
            Recommendation,
            "serialization",
            "A recommendation list (key = user_id).",
        ),
        "topic.model-updates": (ModelUpdate, "serialization", "A model notice."),
        "api.overview": (api.Overview, "serialization", "GET /api/overview"),
        "api.models": (api.ModelsView, "serialization", "GET /models"),
        "api.recommendations": (
            Recommendation,
            "serialization",
            "GET /recommendations/{user_id}: the list last published for the user.",
        ),
        "api.user": (api.UserView, "serialization", "GET /api/users/{user_id}"),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (model, mode, what) in models.items():
        out[name] = {"$schema": DRAFT, "$comment": what, **_model(model, mode)}
    out["topic.events-dlq.headers"] = {"$schema": DRAFT, **_dlq_headers()}
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
