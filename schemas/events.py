"""User events: the contract of the ``events`` topic (Kafka key = user_id, JSON UTF-8)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from schemas.errors import BadInput, format_validation_error, show_value

SCHEMA_VERSION: Literal[1] = 1
MAX_EPOCH_MS = 32503680000000  # year 3000: anything larger is not a millisecond timestamp


RANGE = "between 1970-01-01 and 3000-01-01 UTC (epoch ms 0 to 32503680000000)"
_MIN_TS = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(3000, 1, 1, tzinfo=UTC)


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 with a zone, or epoch milliseconds -> tz-aware UTC datetime, ``RANGE`` only
    (an event from year 9999 would stop every later event from decaying its user's interests).

    Messages say what was expected; the caller adds the value received."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value <= MAX_EPOCH_MS:
            msg = f"expected epoch ms {RANGE}"
            raise ValueError(msg)
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            if not text.isprintable():  # CPython's parser stops at a NUL and accepts the rest
                raise ValueError
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            msg = "expected ISO-8601 or epoch ms"
            raise ValueError(msg) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        msg = "expected ISO-8601 or epoch ms"
        raise ValueError(msg)
    if parsed.tzinfo is None:
        msg = "expected ISO-8601 with a time zone (e.g. ...Z or +02:00) or epoch ms"
        raise ValueError(msg)
    if not _MIN_TS <= parsed <= _MAX_TS:
        msg = f"expected a time {RANGE}"
        raise ValueError(msg)
    return parsed.astimezone(UTC)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# JSON Schema: what ``parse_timestamp`` accepts (validation) / what ``_iso`` writes.
_TIMESTAMP_IN = {
    "anyOf": [
        {"type": "string", "format": "date-time", "description": "ISO-8601 with a time zone"},
        {"type": "number", "minimum": 0, "maximum": MAX_EPOCH_MS, "description": "epoch ms"},
    ]
}
Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema(_TIMESTAMP_IN, mode="validation"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
Id = Annotated[str, Field(min_length=1, max_length=256, strict=True)]


class _EventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Id = Field(description="Unique per event; used to de-duplicate redeliveries.")
    user_id: Id
    item_id: Id
    ts: Timestamp = Field(description="ISO-8601 with zone or epoch milliseconds; stored as UTC.")
    context: dict[str, str] | None = None


class ClickEvent(_EventBase):
    event_type: Literal["click"]


class PurchaseEvent(_EventBase):
    event_type: Literal["purchase"]
    price: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] | None = None
    quantity: Annotated[int, Field(ge=1, strict=True)] | None = None


Event = Annotated[ClickEvent | PurchaseEvent, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[ClickEvent | PurchaseEvent] = TypeAdapter(Event)
_TAGS = frozenset({"click", "purchase"})


def decode_event(raw: bytes | str, max_bytes: int | None = None) -> ClickEvent | PurchaseEvent:
    """Validate one JSON-encoded event; raises BadInput naming the field, expectation, value."""
    if raw is None:
        msg = "event: expected a JSON object, got a null (tombstone) message"
        raise BadInput(msg, field="event", reason="schema")
    size = len(raw)
    if max_bytes is not None and size > max_bytes:
        msg = f"event: expected at most {max_bytes} bytes, got {size} bytes"
        raise BadInput(msg, field="event", reason="too_large")
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, "event", _TAGS) from None
    except UnicodeDecodeError:
        msg = f"event: expected UTF-8 JSON, got {show_value(raw)}"
        raise BadInput(msg, field="event", reason="json") from None


def validate_event(obj: dict[str, Any]) -> ClickEvent | PurchaseEvent:
    """Validate an already-parsed event (e.g. one line of events.jsonl)."""
    try:
        return EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise format_validation_error(exc, "event", _TAGS) from None


def encode_event(event: ClickEvent | PurchaseEvent) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()
