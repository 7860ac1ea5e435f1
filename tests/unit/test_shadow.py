"""Shadow scoring without a broker: the worker's paired hit counting and whole shadow run
(real tiny model), and the job's verdict over the workers' reports."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from schemas import ModelUpdate
from schemas.items import validate_item
from schemas.settings import ServingSettings
from stream_app.core.interests import InterestParams, state_to_bytes
from stream_app.finetune.shadow import aggregate
from stream_app.registry import Registry
from stream_app.worker import catalogue as cat
from stream_app.worker import processing as proc
from stream_app.worker.dlq import Where
from stream_app.worker.metrics import Metrics, parse_counters
from stream_app.worker.models import ServingHolder
from stream_app.worker.shadow import ShadowRun, ShadowScorer


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


async def test_worker_scores_a_shadow_on_the_next_n_events_and_reports_once(
    versions, world_items, tiny_world: Path
):
    """Real served model and a real (inverted-ranker) shadow over real events: nothing of the
    shadow is served, one report after exactly N events, the worse model measured worse."""
    metrics, sent = Metrics(), []
    holder = ServingHolder(
        Registry(versions.root), InterestParams(k=4), ServingSettings(), "cpu", 1, None, metrics
    )
    await holder.load_initial(versions.v1)
    items = [cat.ItemRecord.from_item(validate_item(it), 0.0) for it in world_items]
    await holder.apply_items(items, [])

    async def send(notice: ModelUpdate) -> None:  # the Kafka send, collected
        sent.append(notice)

    scorer = ShadowScorer(holder, metrics, "w1", send)
    notice = ModelUpdate(
        model_version=versions.inverted,
        parent_version=versions.v1,
        action="shadow",
        events=150,
        published_at=datetime.now(UTC),
    )
    await scorer.start(notice)
    assert scorer.run is not None and holder.shadow is not None
    table: dict[str, bytes] = {}
    lines = (tiny_world / "events.jsonl").read_bytes().splitlines()[:400]
    served: set[str] = set()
    for s in range(0, len(lines), 32):
        batch = [
            proc.Incoming(b"k", v, Where("events", 0, s + i), 0.0)
            for i, v in enumerate(lines[s : s + 32])
        ]
        events, dead = proc.decode_all(batch, 10_000)
        rec = holder.recommender
        assert rec is not None
        result = proc.process(batch, events, rec, lambda u, i: table.get(u), dead)
        table.update({u: state_to_bytes(st) for u, (st, _) in result.final.items()})
        served.add(result.model_version)
        scorer.score(result)
    await asyncio.sleep(0)  # the report is sent from a task
    (report,) = sent
    assert report.action == "shadow-report" and report.worker == "w1"
    assert report.model_version == versions.inverted and report.parent_version == versions.v1
    assert report.metrics["events"] == 150 and report.metrics["evaluated"] > 50
    assert report.metrics["shadow_hit_rate"] < report.metrics["current_hit_rate"]
    assert served == {versions.v1} and holder.shadow is None and scorer.run is None
    m = parse_counters(metrics.render().decode())
    assert m["streamrec_shadow_events_total"] == 150
    assert m['streamrec_shadow_reports_total{outcome="ok"}'] == 1
