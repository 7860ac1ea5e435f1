"""Parsers for setting values written as text (an environment variable, a CLI flag): durations
like ``10m``, comma-separated lists, ``NAME=VALUE`` pairs. Each raises ValueError naming what
it expected."""

from __future__ import annotations

import json
import re
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_s(value: Any) -> Any:
    """Seconds from ``90``, ``90s``, ``10m``, ``2h`` or ``1d`` (numbers pass through)."""
    if not isinstance(value, str):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])?\s*", value)
    if not m:
        msg = f"expected a duration like 90s, 10m, 2h or 1d, got {value!r}"
        raise ValueError(msg)
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _items(value: Any) -> Any:
    """A text list (``a,b``; ``none`` or empty = no items; a JSON list) as a list of strings;
    anything else passes through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    if text.lower() in ("", "none"):
        return []
    return [v.strip() for v in text.split(",") if v.strip()]


def csv_strs(value: Any) -> Any:
    return _items(value)


def csv_ints(value: Any) -> Any:
    """Sorted distinct positive integers (cutoffs like ``10,20``)."""
    items = _items(value)
    if not isinstance(items, list | tuple):
        return items
    try:
        ks = sorted({int(v) for v in items})
    except (TypeError, ValueError):
        msg = f"expected comma-separated integers, got {value!r}"
        raise ValueError(msg) from None
    if not ks or ks[0] < 1:
        msg = f"expected positive integers, got {value!r}"
        raise ValueError(msg)
    return ks


def csv_floats(value: Any) -> Any:
    items = _items(value)
    if not isinstance(items, list | tuple):
        return items
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        msg = f"expected comma-separated numbers, got {value!r}"
        raise ValueError(msg) from None


def name_value_pairs(value: Any) -> Any:
    """``{name: value}`` from ``NAME=VALUE`` items (a list, or text ``a=1,b=2``; JSON objects
    pass through)."""
    if isinstance(value, str) and value.strip().startswith("{"):
        return json.loads(value)
    items = _items(value)
    if not isinstance(items, list | tuple):
        return items
    out = {}
    for item in items:
        name, sep, val = str(item).partition("=")
        if not sep or not name.strip() or not val.strip():
            msg = f"expected NAME=VALUE, got {item!r}"
            raise ValueError(msg)
        out[name.strip()] = val.strip()
    return out
