"""The event decoder under generated bad input (hypothesis): every bad message is rejected
with ``BadInput`` (never another exception), a reason the DLQ can carry, a field and a message
of bounded size; odd but valid input is accepted and round-trips."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import BadInput
from schemas.events import decode_event, encode_event
from stream_app.datagen.badinput import (
    DECODER_KINDS,
    KINDS,
    bad_messages,
    edge_case_user_id,
)

MAX_BYTES = 64 * 1024
VALID: list[dict[str, Any]] = [
    {
        "event_id": "e1",
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "ts": "2026-01-01T00:00:00Z",
    },
    {
        "event_id": "e2",
        "event_type": "purchase",
        "user_id": "u2",
        "item_id": "i9",
        "ts": 1767225600000,
        "price": 9.5,
        "quantity": 2,
        "context": {"page": "home"},
    },
]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rejected(raw: bytes | None) -> BadInput:
    with pytest.raises(BadInput) as err:
        decode_event(raw, MAX_BYTES)  # type: ignore[arg-type]
    return err.value


@FAST
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(sorted(DECODER_KINDS)))
def test_every_generated_bad_message_is_rejected_with_its_reason(seed: int, kind: str) -> None:
    (msg,) = bad_messages(1, VALID, MAX_BYTES, seed, frozenset({kind}))
    err = _rejected(msg.value)
    assert err.reason in msg.reasons, (kind, err.reason, str(err)[:300])
    assert err.field.startswith("event"), (kind, err.field)
    assert str(err).startswith(err.field) or str(err).startswith("event")
    assert "expected" in str(err)
    assert len(str(err)) < 4000, (kind, len(str(err)))  # a huge input never floods a log line


@FAST
@given(raw=st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise_anything_but_bad_input(raw: bytes) -> None:
    try:
        decode_event(raw, MAX_BYTES)
    except BadInput as err:
        assert err.reason in {"json", "schema"} and str(err)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(field=st.sampled_from([*VALID[1], "schema_version"]), value=JSON, which=st.integers(0, 1))
def test_any_value_in_any_field_is_accepted_or_rejected_cleanly(
    field: str, value: Any, which: int
) -> None:
    raw = json.dumps({**VALID[which], field: value}).encode()  # NaN/Infinity as Python writes them
    try:
        ev = decode_event(raw, MAX_BYTES)
    except BadInput as err:
        assert err.reason == "schema" or err.reason == "json"
        assert field in err.field or err.field in ("event", "event.event_type")
        return
    assert decode_event(encode_event(ev), MAX_BYTES) == ev  # what is accepted round-trips


@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_odd_but_valid_user_ids_are_accepted_and_round_trip(seed: int) -> None:
    uid = edge_case_user_id(random.Random(seed))
    ev = decode_event(json.dumps({**VALID[0], "user_id": uid}).encode(), MAX_BYTES)
    assert ev.user_id == uid and len(uid) <= 256
    assert decode_event(encode_event(ev), MAX_BYTES) == ev
    assert uid.encode()  # the Kafka key the worker writes


def test_unknown_items_decode_and_the_mix_covers_every_kind() -> None:
    msgs = bad_messages(3000, VALID, MAX_BYTES, seed=5)
    assert {m.kind for m in msgs} == set(KINDS)
    unknown = [m for m in msgs if m.kind == "unknown_item"]
    for m in unknown:
        assert decode_event(m.value, MAX_BYTES).item_id.startswith("no-such-item-")  # type: ignore[arg-type]
    oversize = [m for m in msgs if m.kind == "oversize"]
    assert oversize and all(len(m.value or b"") > MAX_BYTES for m in oversize)
    assert bad_messages(50, VALID, MAX_BYTES, seed=5) == msgs[:50]  # deterministic per seed


@pytest.mark.parametrize(
    "ts",
    [-1, 32503680000001, "1969-12-31T23:59:59Z", "3000-01-01T00:00:01Z", "0001-01-01T00:00:00Z"],
)
def test_timestamps_outside_1970_to_3000_are_rejected_in_both_forms(ts: Any) -> None:
    err = _rejected(json.dumps({**VALID[0], "ts": ts}).encode())
    assert err.field == "event.ts" and "between 1970-01-01 and 3000-01-01" in str(err)
    assert str(err).count(", got ") == 1  # the value once, not twice
