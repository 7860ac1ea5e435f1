"""Catalogue items: the contract of the compacted ``items`` topic (Kafka key = item_id)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.errors import BadInput, format_validation_error
from schemas.events import SCHEMA_VERSION, Id, Timestamp


class CatalogueItem(BaseModel):
    """One catalogue item. A message with ``deleted: true`` (or a null Kafka value) removes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = SCHEMA_VERSION
    item_id: Id
    title: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    description: Annotated[str, Field(max_length=20000)] | None = None
    categories: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    ts: Timestamp | None = None
    deleted: bool = False

    @model_validator(mode="after")
    def _title_unless_deleted(self) -> CatalogueItem:
        if not self.deleted and self.title is None:
            msg = "expected a title of 1..2000 characters (required unless deleted)"
            raise PydanticCustomError("missing_title", msg, {"field": "title"})  # noqa: EM101
        return self

    def text(self) -> str:
        """The text the encoder sees: title, categories, description (truncated later)."""
        parts = [self.title or ""]
        if self.categories:
            parts.append(", ".join(self.categories))
        if self.description:
            parts.append(self.description)
        return ". ".join(p for p in parts if p)


ITEM_ADAPTER: TypeAdapter[CatalogueItem] = TypeAdapter(CatalogueItem)


def decode_item(raw: bytes | str, max_bytes: int | None = None) -> CatalogueItem:
    size = len(raw)
    if max_bytes is not None and size > max_bytes:
        msg = f"item: expected at most {max_bytes} bytes, got {size} bytes"
        raise BadInput(msg, field="item", reason="too_large")
    try:
        return ITEM_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, "item") from None


def validate_item(obj: dict[str, Any]) -> CatalogueItem:
    try:
        return ITEM_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise format_validation_error(exc, "item") from None


def encode_item(item: CatalogueItem) -> bytes:
    return item.model_dump_json(exclude_none=True).encode()
