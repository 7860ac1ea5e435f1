"""JSONL files of schema models: read them naming file:line on errors, write them atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.events import ClickEvent, PurchaseEvent, validate_event
from schemas.items import CatalogueItem, validate_item

OnError = Callable[[int, str], None]


def iter_jsonl(
    path: str | Path, on_error: OnError | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_no, object)`` for each non-blank line (line numbers start at 1).

    A line that is not a JSON object raises ``ValueError`` naming ``file:line``, unless
    ``on_error(line_no, reason)`` is given: then the line is reported to it and skipped.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: expected a JSONL file (one JSON object per line), but it does not exist"
        raise FileNotFoundError(msg)
    with path.open("r", encoding="utf-8", errors="replace", newline="\n") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                reason = (
                    f"expected a JSON object, got invalid JSON ({exc.msg} at column {exc.colno})"
                )
                obj = None
            else:
                reason = f"expected a JSON object, got {type(obj).__name__}"
            if isinstance(obj, dict):
                yield line_no, obj
            elif on_error is not None:
                on_error(line_no, reason)
            else:
                msg = f"{path}:{line_no}: {reason}"
                raise ValueError(msg)


def write_jsonl(path: str | Path, models: Iterable[BaseModel]) -> int:
    """Write one ``model_dump_json(exclude_none=True)`` per line, atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            for model in models:
                fh.write(model.model_dump_json(exclude_none=True))
                fh.write("\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def load_items(path: str | Path) -> list[CatalogueItem]:
    """All catalogue items of ``items.jsonl``; a bad line raises ``ValueError`` (file:line)."""
    items: list[CatalogueItem] = []
    for line_no, obj in iter_jsonl(path):
        try:
            items.append(validate_item(obj))
        except ValueError as exc:
            msg = f"{path}:{line_no}: {exc}"
            raise ValueError(msg) from None
    return items


def load_events(path: str | Path) -> list[ClickEvent | PurchaseEvent]:
    """Events of ``events.jsonl`` in file order; a bad line raises ``ValueError`` (file:line)."""
    events: list[ClickEvent | PurchaseEvent] = []
    for line_no, obj in iter_jsonl(path):
        try:
            events.append(validate_event(obj))
        except ValueError as exc:
            msg = f"{path}:{line_no}: {exc}"
            raise ValueError(msg) from None
    return events
