"""The contracts: pydantic v2 models of everything that crosses a process boundary (events,
items, recommendations, dead letters, errors), the settings tree, the registry manifest, the ONNX
graph contract and the typed reports. The base layer: it imports nothing of ours."""

from schemas.dlq import dlq_headers, headers_dict
from schemas.errors import BadInput
from schemas.events import (
    ClickEvent,
    Event,
    PurchaseEvent,
    decode_event,
    encode_event,
    validate_event,
)
from schemas.items import CatalogueItem, decode_item, encode_item, validate_item
from schemas.recommendations import ModelUpdate, Recommendation, RecommendedItem
from schemas.settings import Settings

__all__ = [
    "BadInput",
    "CatalogueItem",
    "ClickEvent",
    "Event",
    "ModelUpdate",
    "PurchaseEvent",
    "Recommendation",
    "RecommendedItem",
    "Settings",
    "decode_event",
    "decode_item",
    "dlq_headers",
    "encode_event",
    "encode_item",
    "headers_dict",
    "validate_event",
    "validate_item",
]
