"""Shadow scoring without a broker: the worker's paired hit counting and the job's verdict
over the workers' reports."""

from __future__ import annotations

from datetime import UTC, datetime

from model_export.finetune.shadow import aggregate
from schemas import ModelUpdate
from stream_app.worker.shadow import ShadowRun


def test_paired_hits_count_only_events_both_models_had_a_list_for():
    run = ShadowRun("v2", 10, None)  # type: ignore[arg-type]
    run.observe("u1", "a", ("b", "c"), ("c", "d"))  # first event of u1: nothing to judge
    run.observe("u1", "c", ("x",), ("y",))  # c: in both previous lists
    run.observe("u1", "y", ("q",), ("r",))  # y: only in the shadow's
    run.observe("u1", "y", ("q",), ("r",))  # the same item again: no outcome
    run.observe("u2", "b", (), ())
    m = run.metrics()
    assert (run.evaluated, run.current_hits, run.shadow_hits) == (2, 1, 2)
    assert m["current_hit_rate"] == 0.5 and m["shadow_hit_rate"] == 1.0


def report(worker: str, cur: int, sha: int, n: int, reason: str | None = None) -> ModelUpdate:
    metrics = {"current_hits": cur, "shadow_hits": sha, "evaluated": n, "events": n + 5}
    return ModelUpdate(
        model_version="v2",
        parent_version="v1",
        action="shadow-report",
        published_at=datetime.now(UTC),
        worker=worker,
        reason=reason,
        metrics={} if reason else metrics,
    )


def test_verdict_sums_the_workers_counts_and_applies_the_tolerance():
    v = aggregate([report("w1", 30, 25, 100), report("w2", 10, 14, 100)], 0.01)
    assert v.promote and v.current_hit_rate == 0.20 and v.shadow_hit_rate == 0.195
    assert v.evaluated == 200 and v.events == 210 and sorted(v.workers) == ["w1", "w2"]
    v = aggregate([report("w1", 30, 20, 100), report("w2", 10, 10, 100)], 0.01)
    assert not v.promote and "0.1500 < current 0.2000" in v.reason


def test_no_report_or_a_worker_that_could_not_load_it_refuses():
    assert not aggregate([], 0.01).promote
    assert "no worker reported" in aggregate([], 0.01).reason
    v = aggregate([report("w1", 10, 20, 100), report("w2", 0, 0, 0, "refused: sha256")], 0.01)
    assert not v.promote and "w2: refused: sha256" in v.reason
