"""Online hit rate and the automatic-rollback detector (pure logic, no broker, no model)."""

from __future__ import annotations

import json

from schemas.events import decode_event
from stream_app.core.engine import Rec
from stream_app.worker.hitrate import LastLists, OnlineQuality, RollbackDetector
from stream_app.worker.metrics import Metrics, parse_counters
from stream_app.worker.processing import BatchResult, Snapshot


def test_an_outcome_belongs_to_the_version_that_made_the_previous_list():
    last = LastLists(10)
    assert last.outcome("u", "a", "v1", ("b", "c")) is None  # no previous list
    assert last.outcome("u", "b", "v2", ("d",)) == ("v1", True)  # v1's list had b
    assert last.outcome("u", "c", "v2", ("e",)) == ("v2", False)
    assert last.outcome("u", "c", "v2", ("c",)) is None  # same item again: no outcome


def test_last_lists_forget_the_least_recently_seen_user():
    last = LastLists(2)
    last.outcome("u1", "a", "v1", ("x",))
    last.outcome("u2", "a", "v1", ("x",))
    last.outcome("u1", "b", "v1", ("x",))  # u1 seen again: u2 is now the oldest
    last.outcome("u3", "a", "v1", ("x",))
    assert len(last) == 2
    assert last.outcome("u1", "x", "v1", ()) == ("v1", True)
    assert last.outcome("u2", "x", "v1", ()) is None  # forgotten


def feed(det: RollbackDetector, version: str, hits: int, n: int):
    verdicts = [det.record(version, i < hits) for i in range(n)]
    return [v for v in verdicts if v is not None]


def test_a_version_whose_hit_rate_halves_after_a_swap_is_judged_bad_once():
    det = RollbackDetector(drop=0.5, window=100)
    assert feed(det, "v1", 30, 100) == []  # baseline: 0.30, nothing watched yet
    det.swapped("v1", "v2")
    assert feed(det, "v1", 3, 10) == []  # v1's last lists are still v1's outcomes
    assert feed(det, "v2", 10, 99) == []  # not a full window yet
    (v,) = feed(det, "v2", 0, 1)
    assert v.rollback and (v.version, v.previous) == ("v2", "v1")
    assert v.after == 0.10 and v.n_after == 100
    assert v.before == 0.23 and v.n_before == 100  # v1's last 100 outcomes: 20 + 3 hits
    assert "roll back" in v.describe()
    assert feed(det, "v2", 0, 300) == []  # one verdict per swap


def test_a_drop_within_the_fraction_keeps_the_new_version():
    det = RollbackDetector(drop=0.5, window=100)
    feed(det, "v1", 30, 100)
    det.swapped("v1", "v2")
    (v,) = feed(det, "v2", 16, 100)  # 0.16 >= 0.30 * 0.5
    assert not v.rollback and "keep" in v.note


def test_no_verdict_without_a_baseline_and_none_when_disabled():
    det = RollbackDetector(drop=0.5, window=100)
    feed(det, "v1", 10, 40)  # a worker that has just started: less than half a window
    det.swapped("v1", "v2")
    (v,) = feed(det, "v2", 0, 100)
    assert not v.rollback and "baseline too small" in v.note
    zero = RollbackDetector(drop=0.5, window=50)
    feed(zero, "v1", 0, 50)
    zero.swapped("v1", "v2")
    (v,) = feed(zero, "v2", 0, 50)
    assert not v.rollback and "zero" in v.note
    off = RollbackDetector(drop=0.0, window=10)
    feed(off, "v1", 10, 10)
    off.swapped("v1", "v2")
    assert feed(off, "v2", 0, 100) == [] and not off.enabled


def test_a_second_swap_before_the_verdict_restarts_the_watch():
    det = RollbackDetector(drop=0.5, window=50)
    feed(det, "v1", 20, 50)
    det.swapped("v1", "v2")
    feed(det, "v2", 0, 20)
    det.swapped("v2", "v1")  # e.g. an operator rolled back by hand
    (v,) = feed(det, "v1", 20, 50)  # v1 judged against v2's (too few) outcomes
    assert (v.version, v.previous) == ("v1", "v2") and not v.rollback


def event(eid: str, user: str, item: str):
    return decode_event(
        json.dumps(
            {
                "event_id": eid,
                "user_id": user,
                "item_id": item,
                "event_type": "click",
                "ts": 1_780_000_000_000,
            }
        ).encode(),
        10_000,
    )


def result(version: str, rows: list[tuple[str, str, str, list[str], bool]]) -> BatchResult:
    r = BatchResult(model_version=version)
    for i, (eid, user, item, shown, dup) in enumerate(rows):
        r.snapshots.append(Snapshot(i, event(eid, user, item), None, dup))  # type: ignore[arg-type]
        r.recs[i] = [Rec(x, 1.0, 0.5, 0.1, 0, []) for x in shown]
    return r


def test_online_quality_counts_outcomes_by_version_and_skips_duplicates():
    metrics = Metrics()
    q = OnlineQuality(100, 0.5, 2, metrics)
    assert q.observe(result("v1", [("e1", "u", "a", ["b"], False)])) is None
    q.observe(result("v1", [("e2", "u", "b", ["c"], False), ("e2", "u", "b", ["z"], True)]))
    q.detector.swapped("v1", "v2")
    q.observe(result("v2", [("e3", "u", "x", ["c"], False), ("e4", "u", "y", ["q"], False)]))
    (verdict,) = [q.observe(result("v2", [("e5", "u", "z", [], False)]))]
    assert verdict is not None and verdict.rollback  # v2: 0/2 vs v1: 1/2
    m = parse_counters(metrics.render().decode())
    assert m['streamrec_online_evaluated_total{version="v1"}'] == 2  # e2 (hit), e3 (miss)
    assert m['streamrec_online_hits_total{version="v1"}'] == 1
    assert m['streamrec_online_evaluated_total{version="v2"}'] == 2
    assert m['streamrec_online_hits_total{version="v2"}'] == 0
