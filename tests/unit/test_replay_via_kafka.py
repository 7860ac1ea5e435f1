"""--via-kafka without a broker: the produce timeline and the matching of consumed
recommendations to the next event (the broker run itself is tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import ClickEvent
from schemas.items import CatalogueItem
from schemas.settings import Settings
from stream_app.replay.catalogue import Catalogue
from stream_app.replay.via_kafka import Received, _timeline, match_recommendations

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _events() -> list[ClickEvent]:
    seq = [
        ("u1", "a"),
        ("u2", "b"),
        ("u1", "b"),
        ("u2", "c"),
        ("u1", "c"),
        ("u2", "x"),
        ("u2", "a"),
    ]
    return [
        ClickEvent(
            event_id=f"e{n}", user_id=u, item_id=i, event_type="click", ts=T0 + timedelta(minutes=n)
        )
        for n, (u, i) in enumerate(seq)
    ]


def _rec(user: str, trigger: str, items: list[str], version: str = "v0001") -> Received:
    return Received(user, trigger, version, [{"item_id": i} for i in items], 3.0, 100.0)


def test_each_event_is_scored_against_the_list_after_the_previous_one() -> None:
    events = _events()
    cat = Catalogue.build([CatalogueItem(item_id=i, title=i) for i in "abc"], ["a", "b", "c"])
    sent = {e.event_id: 99.9 for e in events}
    got = {
        "e0": _rec("u1", "e0", ["b", "c"]),  # u1's list before e2 (b): hit at 0
        "e1": _rec("u2", "e1", ["a", "c"]),  # u2's list before e3 (c): hit at 1
        "e2": _rec("u1", "e2", ["a"]),  # before e4 (c): miss
        "e3": _rec("u2", "e3", ["a", "b"], version="v0002"),
        # e5 (item x, unknown) was dead-lettered: no recommendation, e3's list stays current
        "e6": _rec("u2", "e6", ["b"]),
    }
    res, kafka = match_recommendations(cat, 2, None, events, list(range(7)), sent, got, "v0001", 10)
    # scored: e2 (u1), e3 (u2), e4 (u1), e6 (u2, against e3's list); e5 has an unknown item
    assert res.ranks == [0, 1, -1, 0]
    assert kafka.events_without_recommendation == 2  # e4 (not consumed) and e5
    assert kafka.other_model_version == 1 and kafka.scored_without_list == 0
    assert kafka.worker_latency_ms["p50"] == 3.0
    assert abs(kafka.end_to_end_ms["p50"] - 100.0) < 1e-6


def test_a_missing_recommendation_is_counted_not_skipped() -> None:
    events = _events()
    cat = Catalogue.build([CatalogueItem(item_id=i, title=i) for i in "abc"], ["a", "b", "c"])
    got = {"e1": _rec("u2", "e1", ["c"])}  # the worker lost everything else
    res, kafka = match_recommendations(
        cat, 2, None, events, list(range(7)), {e.event_id: 0.0 for e in events}, got, "v0001", 10
    )
    assert res.ranks == [0, -1]  # e3 (c) and e6 (a) both against e1's list [c]
    assert kafka.scored_without_list == 2  # e2 and e4: u1 never got a list


def test_items_are_produced_before_the_first_event_at_or_after_their_time() -> None:
    items = [
        CatalogueItem(item_id="late", title="late", ts=T0 + timedelta(minutes=3, seconds=30)),
        CatalogueItem(item_id="a", title="a"),
        CatalogueItem(item_id="b", title="b", ts=T0),
    ]
    timeline, order = _timeline(Settings(), items, _events())
    kinds = [(topic, key.decode()) for topic, key, _, _ in timeline]
    assert kinds[:3] == [("items", "a"), ("items", "b"), ("events", "u1")]
    late = kinds.index(("items", "late"))
    assert [k for k in kinds[:late] if k[0] == "events"] == [
        ("events", u) for u in ("u1", "u2", "u1", "u2")
    ]
    assert order == list(range(7)) and len(timeline) == 10
