import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    BadInput,
    CatalogueItem,
    ClickEvent,
    ModelUpdate,
    PurchaseEvent,
    Recommendation,
    RecommendedItem,
    Settings,
    decode_event,
    decode_item,
    dlq_headers,
    encode_event,
    encode_item,
    headers_dict,
)
from schemas.settings import KafkaSettings, setting_env_names

ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
times = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by API
    max_value=datetime(2999, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
ctx = st.none() | st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)


@given(ids, ids, ids, times, ctx)
def test_click_roundtrip(eid, uid, iid, ts, context):
    ev = ClickEvent(
        event_id=eid, event_type="click", user_id=uid, item_id=iid, ts=ts, context=context
    )
    back = decode_event(encode_event(ev))
    assert back == ev and isinstance(back, ClickEvent)
    assert back.ts.tzinfo is not None and back.ts.utcoffset() == timedelta(0)


@given(ids, ids, ids, times, st.none() | st.floats(0, 1e6), st.none() | st.integers(1, 1000))
def test_purchase_roundtrip(eid, uid, iid, ts, price, qty):
    ev = PurchaseEvent(
        event_id=eid,
        event_type="purchase",
        user_id=uid,
        item_id=iid,
        ts=ts,
        price=price,
        quantity=qty,
    )
    assert decode_event(encode_event(ev)) == ev


@given(
    ids,
    st.text(min_size=1, max_size=100),
    st.lists(st.text(min_size=1, max_size=20), max_size=5),
    st.none() | st.floats(0, 1e5),
    st.booleans(),
)
def test_item_roundtrip(iid, title, cats, price, deleted):
    item = CatalogueItem(item_id=iid, title=title, categories=cats, price=price, deleted=deleted)
    assert decode_item(encode_item(item)) == item


def test_epoch_ms_and_zones_are_normalised_to_utc():
    a = decode_event(
        b'{"event_id":"e","event_type":"click","user_id":"u","item_id":"i","ts":1700000000123}'
    )
    b = decode_event(
        b'{"event_id":"e","event_type":"click","user_id":"u","item_id":"i",'
        b'"ts":"2023-11-14T23:13:20.123+01:00"}'
    )
    assert a.ts == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert b.ts == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


GOOD = {
    "event_id": "e1",
    "event_type": "click",
    "user_id": "u1",
    "item_id": "i1",
    "ts": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (
            {"ts": "yesterday"},
            "event.ts",
            "event.ts: expected ISO-8601 or epoch ms, got 'yesterday'",
        ),
        ({"ts": "2026-01-01T00:00:00"}, "event.ts", "with a time zone"),
        ({"ts": -5}, "event.ts", "got -5"),
        (
            {"event_type": "buy"},
            "event.event_type",
            "expected one of 'click', 'purchase', got 'buy'",
        ),
        ({"user_id": 5}, "event.user_id", "event.user_id: expected a string, got 5"),
        ({"item_id": ""}, "event.item_id", "got ''"),
        ({"event_id": None}, "event.event_id", "expected a string, got None"),
        ({"schema_version": 2}, "event.schema_version", "expected one of 1, got 2"),
        (
            {"event_type": "purchase", "price": -1},
            "event.price",
            "greater than or equal to 0, got -1",
        ),
        ({"event_type": "purchase", "quantity": 0}, "event.quantity", "got 0"),
        ({"context": {"a": 1}}, "event.context.a", "expected a string, got 1"),
    ],
)
def test_rejections_name_field_expectation_and_value(change, field, expected):
    raw = json.dumps({**GOOD, **change}).encode()
    with pytest.raises(BadInput) as err:
        decode_event(raw)
    assert err.value.field == field
    assert expected in str(err.value)
    assert err.value.reason == "schema"


def test_missing_field_malformed_json_and_huge_payload():
    with pytest.raises(BadInput, match=r"event.user_id: expected a value \(field is required\)"):
        decode_event(json.dumps({k: v for k, v in GOOD.items() if k != "user_id"}))
    with pytest.raises(
        BadInput,
        match=r"expected valid JSON \(key must be a string at line 1 column 2\), got '{not json",
    ) as err:
        decode_event(b"{not json")
    assert err.value.reason == "json"
    huge = json.dumps({**GOOD, "context": {"x": "y" * 2_000_000}}).encode()
    with pytest.raises(
        BadInput, match=r"expected at most 1000000 bytes, got 2000\d\d\d bytes"
    ) as err:
        decode_event(huge, max_bytes=Settings().max_message_bytes)
    assert err.value.reason == "too_large"


def test_long_values_are_truncated_in_messages():
    with pytest.raises(BadInput) as err:
        decode_event(json.dumps({**GOOD, "ts": "x" * 5000}))
    assert len(str(err.value)) < 200 and "..." in str(err.value)


def test_item_rules():
    with pytest.raises(BadInput, match=r"item.title: expected a title of 1..2000 characters"):
        decode_item(b'{"item_id": "a"}')
    assert decode_item(b'{"item_id": "a", "deleted": true}').deleted
    with pytest.raises(BadInput, match=r"item.title: expected at most 2000 characters"):
        decode_item(json.dumps({"item_id": "a", "title": "t" * 2001}))
    with pytest.raises(BadInput, match=r"item.description: expected at most 20000"):
        decode_item(json.dumps({"item_id": "a", "title": "t", "description": "d" * 20001}))


def test_recommendation_and_notice_contracts():
    rec = Recommendation(
        user_id="u",
        trigger_event_id="e",
        model_version="v0001",
        created_at=datetime.now(UTC),
        latency_ms=3.5,
        items=[
            RecommendedItem(
                item_id="i", score=0.5, p_click=0.5, p_purchase=0.1, interest=0, because=["j"]
            )
        ],
    )
    assert Recommendation.model_validate_json(rec.model_dump_json()) == rec
    with pytest.raises(ValidationError):
        RecommendedItem(item_id="i", score=1, p_click=1.5, p_purchase=0, interest=0)
    note = ModelUpdate(model_version="v2", parent_version="v1", published_at=datetime.now(UTC))
    assert ModelUpdate.model_validate_json(note.model_dump_json()) == note


def test_dlq_headers_carry_the_contract():
    exc = BadInput("event.ts: expected ISO-8601 or epoch ms, got 'x'", field="event.ts")
    h = headers_dict(dlq_headers(exc, "events", 3, 42))
    assert h == {
        "error.class": "BadInput",
        "error.message": str(exc),
        "source.topic": "events",
        "source.partition": "3",
        "source.offset": "42",
        "error.reason": "schema",
    }


def test_settings_env_nested_frozen_and_secret(monkeypatch):
    monkeypatch.setenv("STREAMREC_KAFKA__BROKER", "k1:9093")
    monkeypatch.setenv("STREAMREC_TOPICS__EVENTS", "ev2")
    monkeypatch.setenv("STREAMREC_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("STREAMREC_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("STREAMREC_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("STREAMREC_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    s = Settings()
    assert s.kafka.broker == "k1:9093" and s.topics.events == "ev2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.kafka.client_kwargs()["sasl_plain_password"] == "hunter2"
    assert (
        s.with_overrides(**{"serving.top_k": 5}).kafka.sasl_password.get_secret_value() == "hunter2"
    )
    with pytest.raises(ValidationError):
        s.serving.top_k = 3  # type: ignore[misc]
    monkeypatch.setenv("STREAMREC_SERVING__DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_every_setting_is_documented_by_env_name():
    names = {row[0] for row in setting_env_names()}
    assert {
        "STREAMREC_KAFKA__BROKER",
        "STREAMREC_TOPICS__DLQ",
        "STREAMREC_INTERESTS__K",
        "STREAMREC_SERVING__DEVICE",
        "STREAMREC_MAX_MESSAGE_BYTES",
    } <= names
    assert all("hunter" not in row[1] for row in setting_env_names())


def test_sasl_settings_must_be_complete_and_the_error_names_what_is_missing():
    base = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}
    with pytest.raises(ValidationError) as exc:
        KafkaSettings(**base, sasl_username="alice")
    assert "STREAMREC_KAFKA__SASL_PASSWORD" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        KafkaSettings(**base, sasl_password="s3cret-x")
    assert "STREAMREC_KAFKA__SASL_USERNAME" in str(exc.value)
    assert "s3cret-x" not in str(exc.value)  # pydantic shows inputs in errors unless told not to
    ok = KafkaSettings(**base, sasl_username="alice", sasl_password="s3cret-x")
    assert "s3cret-x" not in repr(ok)
    override = Settings().with_overrides(**{f"kafka.{k}": v for k, v in ok.model_dump().items()})
    assert override.kafka.sasl_password is not None
    wrong = override.with_overrides(**{"kafka.sasl_password": "other"})
    assert wrong.kafka.sasl_password.get_secret_value() == "other"  # an override wins
