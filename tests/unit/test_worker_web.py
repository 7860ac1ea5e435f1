"""The worker's read API parts without a broker: the bearer check, the overview counters
against the /metrics text, a user's view from a real stored state, the model log, the latest
lists, the web settings reaching faust."""

from datetime import UTC, datetime

import numpy as np
import pytest

from schemas.items import CatalogueItem
from schemas.settings import Settings
from stream_app.core.interests import (
    CLICK,
    PURCHASE,
    EventLite,
    InterestParams,
    new_state,
    state_to_bytes,
    update_interests,
)
from stream_app.worker.catalogue import ItemRecord
from stream_app.worker.hitrate import RollbackDetector
from stream_app.worker.latest import LatestLists
from stream_app.worker.metrics import Metrics, parse_counters
from stream_app.worker.model_log import ModelLog
from stream_app.worker.user_view import read_interests, user_view
from stream_app.worker.views import counters
from stream_app.worker.web import token_ok


def test_bearer_token_check():
    assert token_ok(None, None) and token_ok(None, "Bearer anything")
    assert token_ok("s3cret", "Bearer s3cret") and token_ok("s3cret", "bearer s3cret")
    for header in (None, "", "s3cret", "Bearer", "Bearer s3cre", "Basic s3cret", "Bearer s3cretx"):
        assert not token_ok("s3cret", header), header


def test_overview_counters_are_the_numbers_of_the_metrics_page():
    m = Metrics()
    m.events_in.inc(42)
    m.recs_out.inc(40)
    m.duplicates.inc(3)
    m.dlq.labels("json").inc(1)
    m.dlq.labels("unknown_item").inc(2)
    m.online_evaluated.labels("v0002").inc(30)
    m.online_hits.labels("v0002").inc(6)
    m.online_evaluated.labels("v0001").inc(10)
    m.catalogue_size.set(321)
    m.model_loaded("v0001", None)
    m.model_loaded("v0002", "v0001")
    page = parse_counters(m.render().decode())
    c, rates = counters(m.registry)
    assert c.events_in == page["streamrec_events_in_total"] == 42
    assert c.recommendations_out == page["streamrec_recommendations_out_total"] == 40
    assert c.duplicates == page["streamrec_duplicate_events_total"] == 3
    assert c.dlq == {
        r: page[f'streamrec_dlq_total{{reason="{r}"}}'] for r in ("json", "unknown_item")
    }
    assert c.catalogue_items == 321 and c.model_swaps == 1
    assert [(h.version, h.evaluated, h.hits, h.rate) for h in rates] == [
        ("v0001", 10, 0, 0.0),
        ("v0002", 30, 6, 0.2),
    ]


def _record(item_id: str, title: str, cats: list[str]) -> ItemRecord:
    return ItemRecord.from_item(CatalogueItem(item_id=item_id, title=title, categories=cats), 0.0)


def test_user_view_names_interests_by_their_items_and_lists_recent_events():
    params = InterestParams(k=3, threshold=0.9)
    fishing, garden = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    state = new_state(3, 4, "space")
    events = [
        ("e1", "rod", fishing, CLICK, 100.0),
        ("e2", "hose", garden, CLICK, 200.0),
        ("e3", "reel", fishing, PURCHASE, 300.0),
    ]
    for eid, item, vec, kind, ts in events:
        state = update_interests(state, vec, EventLite(eid, item, ts, kind), params)
    records = {
        "rod": _record("rod", "Carbon spinning rod", ["fishing", "rods"]),
        "reel": _record("reel", "Carbon spinning reel", ["fishing", "reels"]),
        "hose": _record("hose", "Garden hose", ["gardening"]),
    }
    latest = (
        b'{"schema_version":1,"user_id":"u1","trigger_event_id":"e3","model_version":"v0001",'
        b'"created_at":"2026-01-01T00:00:00Z","latency_ms":1.5,"items":[{"item_id":"hose",'
        b'"score":0.5,"p_click":0.4,"p_purchase":0.1,"interest":1,"because":["hose"]}]}'
    )
    view = user_view("u1", read_interests(state_to_bytes(state)), records, latest)
    assert view.events == 3
    assert view.updated == datetime.fromtimestamp(300.0, tz=UTC)
    first, second = view.interests  # strongest first: two events, one of them a purchase
    assert [r.item_id for r in first.items] == ["reel", "rod"]
    assert first.categories == ["fishing"] and first.words == ["carbon", "spinning"]
    assert first.name == "fishing · carbon, spinning"
    assert [r.item_id for r in second.items] == ["hose"] and second.categories == ["gardening"]
    assert [(e.item_id, e.event_type) for e in view.recent_events] == [
        ("reel", "purchase"),
        ("hose", "click"),
        ("rod", "click"),
    ]
    assert view.recent_events[0].interest == first.interest
    assert view.latest is not None and view.latest.items[0].because == ["hose"]


def test_user_view_of_an_item_no_longer_listed_keeps_it_unnamed():
    params = InterestParams(k=2)
    state = update_interests(
        new_state(2, 4, "s"), np.ones(4, np.float32), EventLite("e1", "gone", 5.0, CLICK), params
    )
    view = user_view("u2", read_interests(state_to_bytes(state)), {}, None)
    (interest,) = view.interests
    assert interest.items[0].text is None and interest.name == "(unnamed)"
    assert view.latest is None


def test_model_log_records_swaps_refusals_and_verdicts_with_times():
    clock = iter(datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(10))
    log = ModelLog(clock=lambda: next(clock))
    log.loaded("v0001")
    log.swapped("v0002", "v0001", 1.23456)
    log.refused("v0003", "v0002", "sha256 mismatch")
    det = RollbackDetector(drop=0.5, window=4)
    det.record("v0001", True)
    det.record("v0001", True)
    det.swapped("v0001", "v0002")
    verdict = None
    for _ in range(4):
        verdict = det.record("v0002", False) or verdict
    assert verdict is not None and verdict.rollback
    log.verdict(verdict)
    log.rollback("v0002", "v0001", verdict.describe())
    kinds = [(e.kind, e.version, e.previous, e.at.second) for e in log.entries]
    assert kinds == [
        ("loaded", "v0001", None, 0),
        ("swapped", "v0002", "v0001", 1),
        ("refused", "v0003", "v0002", 2),
        ("verdict", "v0002", "v0001", 3),
        ("rollback", "v0001", "v0002", 4),
    ]
    e = list(log.entries)
    assert e[1].seconds == 1.235 and e[2].reason == "sha256 mismatch"
    assert (e[3].verdict, e[3].hit_rate_before, e[3].hit_rate_after) == ("roll back", 1.0, 0.0)


def test_a_verdict_without_baseline_is_logged_as_no_verdict():
    det = RollbackDetector(drop=0.5, window=4)
    det.swapped("v0001", "v0002")
    verdict = None
    for _ in range(4):
        verdict = det.record("v0002", True) or verdict
    log = ModelLog()
    assert verdict is not None
    log.verdict(verdict)
    assert log.entries[0].verdict == "no verdict"


def test_latest_lists_keep_the_last_bytes_per_user_and_drop_the_least_recent():
    latest = LatestLists(2)
    latest.put("a", b"1")
    latest.put("b", b"2")
    latest.put("a", b"3")
    latest.put("c", b"4")
    assert (latest.get("a"), latest.get("b"), latest.get("c")) == (b"3", None, b"4")
    with pytest.raises(ValueError, match="max_users: expected >= 1, got 0"):
        LatestLists(0)


def test_web_binds_to_loopback_by_default_and_to_the_setting_otherwise():
    from stream_app.worker.app import create_app

    app = create_app(Settings())
    assert app.conf.web_bind == "127.0.0.1"
    assert app.conf.canonical_url.host == "127.0.0.1"
    app = create_app(Settings().with_overrides(**{"serving.web_host": "0.0.0.0"}))
    assert app.conf.web_bind == "0.0.0.0"
    assert app.conf.canonical_url.host not in ("0.0.0.0", "127.0.0.1")
