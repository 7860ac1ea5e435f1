"""Payloads of the I/O study: events of ~200 bytes keyed by user, recommendations of ~1.5 KB
(the ``Recommendation`` contract's shape: 10 items with scores, interest and ``because``),
user states of 1 KB, and the JSON encoders compared (stdlib ``json`` vs ``orjson``)."""

from __future__ import annotations

import json
import random
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

PAYLOAD_BYTES = 1500
STATE_BYTES = 1024
ITEMS = 10
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def events(n: int, users: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        user = f"user-{rnd.randrange(users):06d}"
        doc = {
            "schema_version": 1,
            "event_type": "click" if rnd.random() < 0.9 else "purchase",
            "event_id": f"ev-{i:09d}-{rnd.getrandbits(32):08x}",
            "user_id": user,
            "item_id": f"item-{rnd.randrange(10_000):06d}",
            "ts": (T0 + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            "context": {"page": "home", "device": "web"},
        }
        out.append((user.encode(), json.dumps(doc, separators=(",", ":")).encode()))
    return out


_ITEMS = [
    {
        "item_id": f"item-{j:06d}",
        "score": 0.123456789 * (j + 1),
        "p_click": 0.0314159 * (j + 1),
        "p_purchase": 0.00271828 * (j + 1),
        "interest": j % 4,
        "because": [f"item-{j + 100:06d}", f"item-{j + 200:06d}"],
    }
    for j in range(ITEMS)
]


def recommendation_doc(user: str, i: int) -> dict[str, object]:
    return {
        "schema_version": 1,
        "user_id": user,
        "trigger_event_id": f"ev-{i:09d}",
        "model_version": "v0007-20261201T000000Z",
        "created_at": "2026-12-01T00:00:00.123456Z",
        "latency_ms": 12.345,
        "items": [dict(it) for it in _ITEMS],
    }


def encoder(name: str) -> Callable[[bytes | None, int], bytes]:
    """key, index -> the recommendation's JSON bytes, built from a fresh dict as the worker does."""
    if name == "json":
        dumps = json.dumps

        def enc(key: bytes | None, i: int) -> bytes:
            doc = recommendation_doc((key or b"").decode(), i)
            return dumps(doc, separators=(",", ":"), allow_nan=False).encode()

        return enc
    if name == "orjson":
        try:
            import orjson
        except ImportError as exc:  # not a project dependency (yet)
            msg = (
                "payload orjson: orjson is not installed; install it, e.g. "
                "`pip install --target var/pydeps orjson` (the study looks there too)"
            )
            raise ImportError(msg) from exc

        odumps = orjson.dumps

        def enc_o(key: bytes | None, i: int) -> bytes:
            return odumps(recommendation_doc((key or b"").decode(), i))

        return enc_o
    msg = f"payload encoder: expected json or orjson, got {name!r}"
    raise ValueError(msg)


def encode_us(name: str, n: int = 20_000) -> tuple[float, int]:
    """CPU microseconds per recommendation (dict build + encode) and the encoded size."""
    enc = encoder(name)
    size = len(enc(b"user-000001", 1))
    seconds = min(timeit.repeat(lambda: enc(b"user-000001", 1), number=n, repeat=3))
    return seconds / n * 1e6, size


def build_us(n: int = 20_000) -> float:
    seconds = min(timeit.repeat(lambda: recommendation_doc("user-000001", 1), number=n, repeat=3))
    return seconds / n * 1e6
