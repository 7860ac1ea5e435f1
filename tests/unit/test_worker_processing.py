"""The worker's per-batch logic (no broker, no model files): decode -> apply in order ->
recommend, dead letters, duplicates, the Recommendation JSON and the DLQ record. Scores come
from the deterministic ``FakeScorer`` (the real graphs' contract is tested on exported models
in test_worker_models and test_export_registry)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from schemas import Recommendation
from schemas.dlq import headers_dict
from schemas.settings import Settings
from stream_app.core.engine import Bundle, Rec, Recommender
from stream_app.core.interests import InterestParams, state_from_bytes, state_to_bytes
from stream_app.worker import processing as proc
from stream_app.worker.dlq import Where, dead_letter
from tests.fakes import FakeScorer, catalogue, fake_store

CATS = ("shoes", "books", "games")
ITEMS = catalogue(CATS, 8)
# three items of one category, then one of each other category
I0, I1, I2, J0, K0 = "shoes-0", "shoes-1", "shoes-2", "books-0", "games-0"


def build(model: FakeScorer) -> Recommender[FakeScorer]:
    s = Settings().with_overrides(**{"serving.top_k": 5})
    return Recommender(
        Bundle(model, fake_store(model, ITEMS, CATS)),
        InterestParams.from_settings(s.interests),
        s.serving,
    )


@pytest.fixture
def rec() -> Recommender[FakeScorer]:
    """A fresh recommender (own store and popularity) over the fake model."""
    return build(FakeScorer(known=[it.item_id for it in ITEMS]))


def ev(eid: str, user: str, item: str, minute: int, kind: str = "click") -> bytes:
    return json.dumps(
        {
            "event_id": eid,
            "user_id": user,
            "item_id": item,
            "ts": 1_780_000_000_000 + minute * 60_000,
            "event_type": kind,
        }
    ).encode()


def batch(values: list[bytes | None]) -> list[proc.Incoming]:
    return [proc.Incoming(b"k", v, Where("events", 2, 100 + i), 0.0) for i, v in enumerate(values)]


def run(
    values: list[bytes | None],
    rec: Recommender,
    store: dict[str, bytes] | None = None,
) -> tuple[proc.BatchResult, list[tuple[str, int]]]:
    store = {} if store is None else store
    loads: list[tuple[str, int]] = []

    def load(user: str, index: int) -> bytes | None:
        loads.append((user, index))
        return store.get(user)

    b = batch(values)
    events, dead = proc.decode_all(b, 10_000)
    return proc.process(b, events, rec, load, dead), loads


def test_bad_input_becomes_dead_letters_with_original_bytes_and_headers(rec):
    values = [
        b"{nope",
        ev("e1", "u1", I0, 0),
        None,
        b"x" * 20_000,
        json.dumps({"event_id": "e2", "user_id": "u1"}).encode(),
    ]
    result, _ = run(values, rec)
    assert set(result.dead) == {0, 2, 3, 4}
    assert set(result.recs) == {1}
    reasons = {i: d.reason for i, d in result.dead.items()}
    assert reasons == {0: "json", 2: "schema", 3: "too_large", 4: "schema"}
    for i, d in result.dead.items():
        assert d.value == values[i] and d.key == b"k"
        h = headers_dict(d.headers)
        assert h["source.topic"] == "events" and h["source.partition"] == "2"
        assert h["source.offset"] == str(100 + i) and h["error.reason"] == reasons[i]
        assert h["error.class"] == "BadInput" and h["error.message"]


def test_events_of_one_user_are_applied_in_order_each_scored_on_its_own_snapshot(rec):
    values = [
        ev("a1", "ua", I0, 0),
        ev("b1", "ub", J0, 1),
        ev("a2", "ua", I1, 2),
        ev("a3", "ua", I2, 3, "purchase"),
    ]
    result, loads = run(values, rec)
    assert loads == [
        ("ua", 0),
        ("ub", 1),
    ]  # each user's state read once, in its first event's context
    snaps = {s.index: s.state for s in result.snapshots}
    assert [snaps[i].n_events for i in (0, 2, 3)] == [1, 2, 3]
    assert snaps[2].event_ids == ["a1", "a2"]
    assert result.final["ua"][1] == 3 and result.final["ua"][0] is snaps[3]
    assert result.final["ub"][1] == 1
    assert set(result.recs) == {0, 1, 2, 3}
    assert I2 not in {r.item_id for r in result.recs[3]}  # just purchased: excluded
    assert all(len(r) == 5 for r in result.recs.values())


def test_a_redelivered_event_changes_nothing_and_is_published_again(rec):
    store: dict[str, bytes] = {}
    first, _ = run([ev("a1", "ua", I0, 0), ev("a2", "ua", I1, 1)], rec, store)
    store["ua"] = state_to_bytes(first.final["ua"][0])
    again, _ = run([ev("a2", "ua", I1, 1), ev("a3", "ua", I2, 2)], rec, store)
    assert again.duplicates == 1
    assert again.snapshots[0].duplicate and not again.snapshots[1].duplicate
    assert again.snapshots[0].state.n_events == 2  # not counted twice
    assert again.final["ua"][0].n_events == 3
    assert set(again.recs) == {0, 1}  # the duplicate still gets its recommendation


def test_unknown_item_is_dead_lettered_and_the_rest_of_the_batch_proceeds(rec):
    result, _ = run([ev("a1", "ua", "ghost", 0), ev("a2", "ua", I1, 1)], rec)
    assert result.dead[0].reason == "unknown_item"
    assert headers_dict(result.dead[0].headers)["error.class"] == "UnknownItem"
    assert result.dead[0].event_id == "a1"
    assert set(result.recs) == {1}
    assert result.final["ua"][0].n_events == 1


def test_a_state_from_another_vector_space_is_rebuilt_before_the_event(rec):
    first, _ = run([ev("a1", "ua", I0, 0), ev("a2", "ua", K0, 1)], rec)
    stored = {"ua": state_to_bytes(first.final["ua"][0])}
    rec_b = build(FakeScorer(known=[it.item_id for it in ITEMS], space="another-encoder"))
    result, _ = run([ev("a3", "ua", I1, 2)], rec_b, stored)
    state = result.final["ua"][0]
    assert state.space == rec_b.bundle.model.space != first.final["ua"][0].space
    assert state.n_events == 3 and state.event_ids == ["a1", "a2", "a3"]
    assert state.recent_items == [I0, K0, I1]


class BatchTooBig(FakeScorer):
    """Fails every batch of more than one user (as a device out of memory would)."""

    def score(self, slots, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        if slots.shape[0] > 1:
            msg = "batch too big for the device"
            raise RuntimeError(msg)
        return super().score(slots, *args, **kwargs)


def test_scoring_failure_of_the_batch_falls_back_to_one_event_at_a_time():
    model = BatchTooBig(known=[it.item_id for it in ITEMS])
    result, _ = run([ev("a1", "ua", I0, 0), ev("b1", "ub", J0, 1)], build(model))
    assert set(result.recs) == {0, 1} and not result.dead
    assert model.calls[-2:] == [1, 1]  # retried one event at a time


def test_recommendation_json_follows_the_contract():
    recs = [Rec("i1", 0.5, 0.7, 0.2, 0, ["i0"]), Rec("i2", 0.4, 1.0000001, 0.1, -1, [])]
    raw = proc.recommendation_json(
        "u1", "e1", "v0003", recs, 12.5, datetime(2026, 1, 1, tzinfo=UTC)
    )
    doc = Recommendation.model_validate_json(raw)
    assert doc.model_version == "v0003" and doc.trigger_event_id == "e1"
    assert [i.item_id for i in doc.items] == ["i1", "i2"]
    assert doc.items[1].p_click == 1.0 and doc.items[0].because == ["i0"]
    assert json.loads(raw)["created_at"] == "2026-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="non-finite"):
        proc.recommendation_json("u1", "e1", "v", [Rec("i1", float("nan"), 0.5, 0.5, 0, [])], 1.0)


def test_dead_letter_truncation_keeps_the_reason_and_says_so():
    d = dead_letter(ValueError("too big"), b"k", b"x" * 100, Where("events", 0, 5), "too_large")
    small = d.truncated(10)
    h = headers_dict(small.headers)
    assert small.value == b"x" * 10 and small.reason == "too_large"
    assert h["error.truncated"] == "true" and h["source.bytes"] == "100"
    assert h["error.reason"] == "too_large" and str(small.where) == "events[0]@5"


def test_state_bytes_round_trip_through_the_table_value(rec):
    result, _ = run([ev("a1", "ua", I0, 0)], rec)
    state = result.final["ua"][0]
    again = state_from_bytes(state_to_bytes(state))
    assert again.equals(state) and np.array_equal(again.slots, state.slots)
