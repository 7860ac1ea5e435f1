"""Shadow scoring against the REAL broker (worker as a subprocess): the worker scores a shadow
version beside the served one on live events without publishing its lists, reports paired
online hit rates on ``model-updates``, and the fine-tuning job promotes only on a good verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from worker_harness import (
    TopicReader,
    copy_registry,
    event_records,
    invert_ranker,
    produce,
    publish_copy,
    run_cli,
    setup_topics_and_items,
    worker_process,
)

from schemas import ModelUpdate, Settings
from stream_app.finetune.shadow import shadow_promote
from stream_app.kafka.io import read_lines
from stream_app.registry import Registry

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
SHADOW_EVENTS = 300


async def _stream_until_cancelled(settings: Settings, lines: list[bytes], rate: float) -> None:
    """Live traffic for as long as the test needs it (the events again, re-keyed ids)."""
    rounds = 0
    while True:
        batch = lines
        if rounds:
            batch = [
                json.dumps(
                    {**json.loads(x), "event_id": f"r{rounds}-{json.loads(x)['event_id']}"}
                ).encode()
                for x in lines
            ]
        await produce(settings, settings.topics.events, event_records(batch), rate)
        rounds += 1


def _notices(reader: TopicReader) -> list[ModelUpdate]:
    return [ModelUpdate.model_validate_json(r.value) for r in reader.records]


async def test_finetune_shadow_promotes_after_the_workers_report(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    reg_dir = copy_registry(tiny_registry, tmp_path / "registry")
    reg = Registry(reg_dir)
    v1 = reg.current()
    assert v1 is not None
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    lines = read_lines(tiny_world / "events.jsonl")
    worker = worker_process(kafka_settings, reg_dir, tmp_path / "logs").start()
    try:
        await worker.wait_ready()
        async with (
            TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
            TopicReader(kafka_settings, kafka_settings.topics.model_updates) as notices,
        ):
            stream = asyncio.create_task(_stream_until_cancelled(kafka_settings, lines[:3000], 100))
            await recs.wait_for(lambda r: len(r) >= 100, 60)
            cli = await asyncio.to_thread(
                run_cli, kafka_settings, reg_dir, "finetune", "--once", "--json",
                "--events", str(tiny_world / "events.jsonl"),
                "--items", str(tiny_world / "items.jsonl"),
                "--buffer-dir", str(tmp_path / "buffer"), "--epochs", "2", "--min-events", "1",
                "--tolerance", "0.05", "--shadow", str(SHADOW_EVENTS), "--shadow-wait", "120s",
            )  # fmt: skip
            assert cli.returncode == 0, cli.stderr[-3000:]
            (result,) = [json.loads(x) for x in cli.stdout.splitlines() if x.startswith("{")]
            v2 = result["version"]
            await recs.wait_for(
                lambda r: any(json.loads(x.value)["model_version"] == v2 for x in r[-10:]),
                60,
                f"workers serving {v2}",
            )
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
            sent = _notices(notices)
            served = [(r.timestamp, json.loads(r.value)["model_version"]) for r in recs.records]
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert result["decision"] == "published", result["reason"]
    assert "shadow: online hit rate" in result["reason"]
    assert reg.current() == v2 and reg.history() == [v1, v2]
    manifest = reg.manifest(v2)
    assert manifest.status == "published" and manifest.parent == v1
    assert manifest.shadow is not None
    assert manifest.shadow.evaluated > 0 and manifest.shadow.workers
    actions = [(n.action, n.model_version) for n in sent]
    assert actions == [("shadow", v2), ("shadow-report", v2), ("promote", v2)], actions
    shadow, report, promote = sent
    assert shadow.events == SHADOW_EVENTS and shadow.parent_version == v1
    assert report.worker and report.parent_version == v1 and report.reason is None
    assert report.metrics["events"] == SHADOW_EVENTS
    assert 0 < report.metrics["evaluated"] <= SHADOW_EVENTS
    for name in ("current_hit_rate", "shadow_hit_rate"):
        assert 0 <= report.metrics[name] <= 1
    assert result["candidate"]["online_hit_rate"] == pytest.approx(
        report.metrics["shadow_hit_rate"]
    )
    assert result["current"]["online_hit_rate"] == pytest.approx(report.metrics["current_hit_rate"])
    # the shadow's lists were never published: v2 appears only after its promotion
    promoted_at = next(r.timestamp for r in notices.records if b'"promote"' in r.value)
    assert all(ts >= promoted_at for ts, v in served if v == v2)
    assert metrics["streamrec_shadow_events_total"] == SHADOW_EVENTS
    assert metrics['streamrec_shadow_reports_total{outcome="ok"}'] == 1


async def test_a_shadow_that_scores_worse_is_refused_and_never_served(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    reg_dir = copy_registry(tiny_registry, tmp_path / "registry")
    reg = Registry(reg_dir)
    v1 = reg.current()
    assert v1 is not None
    bad = publish_copy(reg_dir, v1, False, "published", invert_ranker)  # passed no real gate
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    lines = read_lines(tiny_world / "events.jsonl")
    worker = worker_process(kafka_settings, reg_dir, tmp_path / "logs").start()
    try:
        await worker.wait_ready()
        async with (
            TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
            TopicReader(kafka_settings, kafka_settings.topics.model_updates) as notices,
        ):
            stream = asyncio.create_task(_stream_until_cancelled(kafka_settings, lines[:3000], 150))
            await recs.wait_for(lambda r: len(r) >= 100, 60)
            verdict = await shadow_promote(
                kafka_settings, reg, bad, v1, SHADOW_EVENTS, 90.0, tolerance=0.01
            )
            health = worker.health()
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
            await asyncio.sleep(1.0)
            versions = {json.loads(r.value)["model_version"] for r in recs.records}
            sent = _notices(notices)
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert not verdict.promote
    assert verdict.shadow_hit_rate < verdict.current_hit_rate - 0.01
    assert verdict.evaluated > 0 and len(verdict.workers) == 1
    assert reg.current() == v1 and reg.history() == [v1]
    manifest = reg.manifest(bad)
    assert manifest.status == "refused" and manifest.refused_reason == verdict.reason
    assert manifest.shadow is not None
    assert manifest.shadow.shadow_hit_rate == verdict.shadow_hit_rate
    assert versions == {v1}  # the shadow's lists never reached the recommendations topic
    assert [n.action for n in sent] == ["shadow", "shadow-report"]
    assert health is not None and health["shadow"] is None and health["model_version"] == v1
    assert metrics["streamrec_shadow_events_total"] == SHADOW_EVENTS
