"""Generated bad input for the ``events`` topic: every message is invalid by construction and
says which dead-letter reasons it may get. Used to fuzz the worker through Kafka (tests and
``bench/faults.py``) and, with hypothesis choosing the seeds, the decoder alone.

Kinds: random bytes, truncated JSON, JSON that is not an object, deep nesting, huge strings,
NaN / Infinity, wrong types, missing fields, bad tags, timestamps out of range, unicode edge
cases (lone surrogates, invalid or overlong UTF-8, a BOM, UTF-16), oversize messages, null
(tombstone) values and events naming an item no catalogue has. Most start from a valid event
and break one thing, so each exercises one rule of the contract.

``edge_case_user_id`` gives the opposite: odd but VALID ids that must be recommended.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SCHEMA = frozenset({"schema"})
JSON = frozenset({"json"})
EITHER = frozenset({"json", "schema"})


@dataclass(frozen=True)
class BadMessage:
    kind: str
    key: bytes | None
    value: bytes | None
    reasons: frozenset[str]  # the DLQ ``error.reason`` values it may get


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _with(event: dict[str, Any], **changes: Any) -> bytes:
    return _dumps({**event, **changes})


def _random_bytes(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    raw = rng.randbytes(rng.randint(1, 2000))
    return (b"{" + raw if rng.random() < 0.5 else raw), JSON


def _truncated(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    raw = _dumps(ev)
    return raw[: rng.randint(0, len(raw) - 1)], JSON


def _not_object(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    doc = rng.choice([[ev], "click", 42, 3.5, True, None, [], ""])
    return _dumps(doc), SCHEMA


def _deep(rng: random.Random, ev: dict[str, Any], max_bytes: int) -> tuple[bytes, frozenset[str]]:
    field = rng.choice(["event_id", "user_id", "context", "ts", "extra"])
    # an unknown field is ignored when it parses: past the parser's depth limit (200) only
    depth = rng.choice([300, 5000, 100_000] if field == "extra" else [2, 64, 300, 100_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    depth = min(depth, (max_bytes - 1000) // (len(opener) + len(closer)))  # under the limit
    nested = opener * depth + b"0" + closer * depth
    raw = _dumps({**ev, field: 0}).replace(f'"{field}":0'.encode(), f'"{field}":'.encode() + nested)
    return raw, EITHER


def _huge(rng: random.Random, ev: dict[str, Any], max_bytes: int) -> tuple[bytes, frozenset[str]]:
    field = rng.choice(["event_id", "user_id", "item_id"])
    size = rng.choice([257, 1000, 50_000, max_bytes // 2])
    size = min(size, max_bytes // 16)  # escaped, an emoji takes 12 bytes: under the limit
    return _with(ev, **{field: rng.choice("xé😀") * size}), SCHEMA


def _nan_inf(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    token = rng.choice(["NaN", "Infinity", "-Infinity"])
    if rng.random() < 0.5:
        doc = {**ev, "ts": 0}
        return _dumps(doc).replace(b'"ts":0', f'"ts":{token}'.encode()), EITHER
    doc = {**ev, "event_type": "purchase", rng.choice(["price", "quantity"]): 0}
    raw = _dumps(doc)
    return raw.replace(b'"price":0', f'"price":{token}'.encode()).replace(
        b'"quantity":0', f'"quantity":{token}'.encode()
    ), EITHER


_WRONG_TYPES: list[tuple[str, Any]] = [
    ("user_id", 12345), ("user_id", None), ("user_id", ["u"]), ("user_id", {"id": "u"}),
    ("user_id", True), ("user_id", ""), ("event_id", 7.5), ("item_id", False),
    ("ts", [2026, 1, 1]), ("ts", True), ("ts", {"iso": "2026-01-01T00:00:00Z"}), ("ts", None),
    ("event_type", 1), ("event_type", ["click"]), ("context", ["a", "b"]), ("context", 5),
    ("context", {"k": 1}), ("context", {"k": None}), ("schema_version", "1"),
]  # fmt: skip


def _wrong_type(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    if rng.random() < 0.25:
        field, value = rng.choice(
            [("price", "cheap"), ("price", -1), ("quantity", 0), ("quantity", 1.5),
             ("quantity", "2"), ("price", [1])]
        )  # fmt: skip
        return _with(ev, event_type="purchase", **{field: value}), SCHEMA
    field, value = rng.choice(_WRONG_TYPES)
    return _with(ev, **{field: value}), SCHEMA


def _missing(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    field = rng.choice(["event_id", "user_id", "item_id", "ts", "event_type"])
    return _dumps({k: v for k, v in ev.items() if k != field}), SCHEMA


def _bad_tag(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    field, value = rng.choice(
        [("event_type", "view"), ("event_type", "CLICK"), ("event_type", ""),
         ("schema_version", 2), ("schema_version", 0)]
    )  # fmt: skip
    return _with(ev, **{field: value}), SCHEMA


_BAD_TS: list[Any] = [
    -1, -1e18, 1e300, 32503680000001, 2**63, "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    "3000-01-02T00:00:00Z", "9999-12-31T23:59:59+14:00", "2026-01-01T00:00:00", "2026-13-45Z",
    "yesterday", "", "  ", "2026-01-01T00:00:00Z\u0000", "１９７０-01-01T00:00:00Z",
]  # fmt: skip


def _timestamp(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    return _with(ev, ts=rng.choice(_BAD_TS)), SCHEMA


def _unicode(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    raw = _dumps({**ev, "user_id": "@user@"})
    uid = b'"@user@"'
    choice = rng.randrange(6)
    if choice == 0:  # lone surrogates, escaped (valid JSON syntax, not a valid string)
        esc = rng.choice([b"\\ud800", b"\\udfff", b"\\ud83d", b"a\\udc00b"])
        return raw.replace(uid, b'"' + esc + b'"', 1), EITHER
    if choice == 1:  # bytes that are not UTF-8 inside a string
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80"])
        return raw.replace(uid, b'"u' + bad + b'"', 1), JSON
    if choice == 2:  # overlong encodings of '/' and NUL
        return raw.replace(uid, b'"\xc0\xaf\xe0\x80\xaf"', 1), JSON
    if choice == 3:  # a byte order mark before the document
        return b"\xef\xbb\xbf" + _dumps(ev), JSON
    if choice == 4:  # the document in UTF-16
        return json.dumps(ev).encode(rng.choice(["utf-16", "utf-16-le", "utf-32"])), JSON
    return _with(ev, event_type=ev["event_type"] + "\u200b"), SCHEMA  # a zero-width space


def _oversize(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    pad = "p" * (max_bytes + rng.randint(1, 4096))
    return _with(ev, context={"pad": pad}), frozenset({"too_large"})


def _tombstone(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[None, frozenset[str]]:
    return None, SCHEMA


def _unknown_item(
    rng: random.Random, ev: dict[str, Any], max_bytes: int
) -> tuple[bytes, frozenset[str]]:
    return _with(ev, item_id=f"no-such-item-{rng.randrange(10**9)}"), frozenset({"unknown_item"})


Maker = Callable[[random.Random, dict[str, Any], int], tuple[bytes | None, frozenset[str]]]
KINDS: dict[str, tuple[Maker, float]] = {  # name -> (maker, weight)
    "random_bytes": (_random_bytes, 10),
    "truncated_json": (_truncated, 8),
    "not_object": (_not_object, 4),
    "deep_nesting": (_deep, 6),
    "huge_string": (_huge, 6),
    "nan_infinity": (_nan_inf, 8),
    "wrong_type": (_wrong_type, 16),
    "missing_field": (_missing, 8),
    "bad_tag": (_bad_tag, 6),
    "timestamp_range": (_timestamp, 10),
    "unicode": (_unicode, 12),
    "oversize": (_oversize, 1),
    "tombstone": (_tombstone, 2),
    "unknown_item": (_unknown_item, 3),
}
DECODER_KINDS = frozenset(KINDS) - {"unknown_item"}  # rejected by the decoder alone


def bad_messages(
    n: int,
    valid_events: list[dict[str, Any]],
    max_bytes: int,
    seed: int = 0,
    kinds: frozenset[str] | None = None,
) -> list[BadMessage]:
    """``n`` bad messages, each derived from one of ``valid_events`` (their keys: the user id
    when the message still has one)."""
    rng = random.Random(seed)
    names = sorted(kinds or KINDS)
    weights = [KINDS[k][1] for k in names]
    out = []
    for _ in range(n):
        (kind,) = rng.choices(names, weights)  # one draw per message: a prefix is stable
        ev = dict(rng.choice(valid_events), event_id=f"bad-{kind}-{rng.randrange(10**12)}")
        value, reasons = KINDS[kind][0](rng, ev, max_bytes)
        key = None if kind == "random_bytes" else str(ev["user_id"]).encode()
        out.append(BadMessage(kind, key, value, reasons))
    return out


def edge_case_user_id(rng: random.Random) -> str:
    """A valid but unusual user id: emoji, right-to-left and zero-width marks, combining
    characters, a NUL, CJK, or exactly the 256-character limit."""
    base = rng.choice(
        [
            "😀-user",
            "\u202eresu-ltr\u202c",
            "zero\u200bwidth",
            "e\u0301\u0301\u0301",
            "nul\u0000inside",
            "用户-一二三",
            "u" * 256,
            " spaced ",
            "tab\tand\nnewline",
        ]
    )
    return (base + f"#{rng.randrange(10**6)}")[-256:]
