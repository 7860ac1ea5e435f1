"""Human-readable validation errors: every message names the field, the expected form and
the value received (truncated), e.g. ``event.ts: expected ISO-8601 or epoch ms, got 'yesterday'``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

MAX_VALUE_CHARS = 60

# pydantic error types -> what we expected, when the error's own message is not already
# phrased as "expected ..."
_EXPECTED = {
    "missing": "a value (field is required)",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "string_too_short": "a non-empty string",
    "json_invalid": "valid JSON",
    "union_tag_invalid": "event_type 'click' or 'purchase'",
    "union_tag_not_found": "an event_type field ('click' or 'purchase')",
    "literal_error": "one of the allowed values",
    "extra_forbidden": "no such field",
}


class BadInput(ValueError):
    """Raised for any input that does not satisfy the wire contract.

    ``field`` is the dotted location (``event.ts``), ``reason`` a short machine-friendly
    class for metrics and DLQ headers (``schema``, ``json``, ``too_large``, ``unknown_item``).
    """

    def __init__(self, message: str, *, field: str = "", reason: str = "schema") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


def show_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """repr() of a received value, truncated so a huge payload never floods a log line."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: limit * 2]).decode("utf-8", "replace")
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _expected(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("expected "):
        return msg
    if kind == "json_invalid" and ctx.get("error"):
        return f"valid JSON ({ctx['error']})"
    if kind in ("string_too_long", "too_long"):
        return f"at most {ctx.get('max_length')} characters"
    if kind in ("string_too_short", "too_short") and ctx.get("min_length", 1) > 1:
        return f"at least {ctx.get('min_length')} characters"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return "a number " + msg.removeprefix("Input should be ")
    if kind == "literal_error":
        return "one of " + str(ctx.get("expected", ""))
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    return msg.removeprefix("Input should be ")


def _location(prefix: str, loc: tuple[Any, ...], tags: frozenset[str]) -> str:
    parts = [prefix]
    for i, part in enumerate(loc):
        if i == 0 and isinstance(part, str) and part in tags:
            continue  # the discriminated-union tag pydantic adds ('click', 'purchase')
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[")


def format_validation_error(
    exc: ValidationError, prefix: str, tags: frozenset[str] = frozenset()
) -> BadInput:
    """Turn a pydantic ValidationError into one BadInput naming field, expectation, value."""
    lines = []
    first_field = ""
    for err in exc.errors(include_url=False):
        field = _location(prefix, tuple(err.get("loc", ())), tags)
        first_field = first_field or field
        kind = err.get("type", "")
        if kind == "missing":
            lines.append(f"{field}: expected {_EXPECTED['missing']}, got nothing")
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            ctx = err.get("ctx") or {}
            tag_field = str(ctx.get("discriminator", "type")).strip("'")
            field = f"{field}.{tag_field}"
            first_field = first_field if len(lines) else field
            expected_tags = ctx.get("expected_tags", "")
            got = show_value(ctx.get("tag")) if kind == "union_tag_invalid" else "nothing"
            lines.append(f"{field}: expected one of {expected_tags}, got {got}")
            continue
        ctx = err.get("ctx") or {}
        if "field" in ctx:  # model-level rule about one field (PydanticCustomError ctx)
            field = f"{field}.{ctx['field']}"
            first_field = first_field if len(lines) else field
            lines.append(f"{field}: {err.get('msg')}, got {ctx.get('got', 'nothing')}")
            continue
        if kind == "extra_forbidden":
            lines.append(f"{field}: unexpected field, got {show_value(err.get('input'))}")
            continue
        expected = _expected(dict(err))
        if not expected.startswith("expected "):
            expected = f"expected {expected}"
        lines.append(f"{field}: {expected}, got {show_value(err.get('input'))}")
    reason = "json" if any(e.get("type") == "json_invalid" for e in exc.errors()) else "schema"
    return BadInput("; ".join(lines), field=first_field, reason=reason)
