"""Rollback against the REAL broker, the worker run as a subprocess: ``streamrec model
rollback`` switches running workers back; a deliberately bad version that bypassed the gate is
rolled back by the worker itself when its live hit rate collapses."""

from __future__ import annotations

import asyncio
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
    rec_values,
    run_cli,
    setup_topics_and_items,
    switches,
    worker_process,
)

from schemas import ModelUpdate, Settings
from stream_app.kafka.io import read_lines
from stream_app.registry import Registry

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _newest(recs: TopicReader, version: str, n: int = 10) -> bool:
    return any(json.loads(r.value)["model_version"] == version for r in recs.records[-n:])


async def test_manual_rollback_switches_workers_back(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    reg_dir = copy_registry(tiny_registry, tmp_path / "registry")
    v1 = Registry(reg_dir).current()
    assert v1 is not None
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = read_lines(tiny_world / "events.jsonl")[:1200]
    worker = worker_process(kafka_settings, reg_dir, tmp_path / "logs").start()
    try:
        await worker.wait_ready()
        async with (
            TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
            TopicReader(kafka_settings, kafka_settings.topics.model_updates) as notices,
        ):
            stream = asyncio.create_task(
                produce(kafka_settings, kafka_settings.topics.events, event_records(events), 80)
            )
            await recs.wait_for(lambda r: len(r) >= 100, 60)
            v2 = await asyncio.to_thread(publish_copy, reg_dir, v1, True)
            await recs.wait_for(lambda r: _newest(recs, v2), 60, f"swap to {v2}")
            cli = await asyncio.to_thread(run_cli, kafka_settings, reg_dir, "model", "rollback")
            assert cli.returncode == 0, cli.stderr
            assert f"CURRENT: {v2} -> {v1}" in cli.stderr  # console output goes to stderr
            await recs.wait_for(lambda r: _newest(recs, v1), 60, f"back to {v1}")
            await stream
            await recs.wait_for(lambda r: len(r) >= len(events), 60, "all recommendations")
            docs = rec_values(recs.records)
            seqs = switches(recs.records)
            sent = [ModelUpdate.model_validate_json(r.value) for r in notices.records]
        health = worker.health()
    finally:
        worker.stop()
    assert sorted(d["trigger_event_id"] for d in docs) == sorted(
        json.loads(x)["event_id"] for x in events
    )  # nothing lost across two swaps
    assert {d["model_version"] for d in docs} == {v1, v2}
    for seq in seqs.values():  # per partition: v1, then v2, then v1 again (never mixed)
        assert seq in ([v1, v2, v1], [v1, v2], [v1]), seq
    assert [v1, v2, v1] in seqs.values()
    assert health is not None and health["model_version"] == v1
    assert [(n.action, n.model_version, n.parent_version) for n in sent] == [("rollback", v1, v2)]


async def test_worker_rolls_back_a_bad_version_by_itself(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    """v2 = v1 with an inverted ranker (worst first), published as CURRENT bypassing the gate:
    the worker's live hit rate for v2 collapses against v1's, so it rolls CURRENT back (once),
    says so in its log, metrics and a ``rollback`` notice, and serves v1 again."""
    reg_dir = copy_registry(tiny_registry, tmp_path / "registry")
    reg = Registry(reg_dir)
    v1 = reg.current()
    assert v1 is not None
    window = 150
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = read_lines(tiny_world / "events.jsonl")[:2000]
    worker = worker_process(kafka_settings, reg_dir, tmp_path / "logs", rollback_window=window)
    worker.start()

    def evaluated(version: str) -> float:
        return worker.metrics().get(f'streamrec_online_evaluated_total{{version="{version}"}}', 0)

    try:
        await worker.wait_ready()
        async with (
            TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
            TopicReader(kafka_settings, kafka_settings.topics.model_updates) as notices,
        ):
            stream = asyncio.create_task(
                produce(kafka_settings, kafka_settings.topics.events, event_records(events), 150)
            )
            for _ in range(300):  # a full baseline window of v1 outcomes first
                if evaluated(v1) >= window:
                    break
                await asyncio.sleep(0.2)
            assert evaluated(v1) >= window
            v2 = await asyncio.to_thread(
                publish_copy, reg_dir, v1, True, "published", invert_ranker
            )
            assert reg.current() == v2
            await recs.wait_for(lambda r: _newest(recs, v2), 60, f"swap to {v2}")
            await recs.wait_for(lambda r: _newest(recs, v1), 60, f"automatic rollback to {v1}")
            await stream
            await recs.wait_for(lambda r: len(r) >= len(events), 60, "all recommendations")
            seqs = switches(recs.records)
            sent = [ModelUpdate.model_validate_json(r.value) for r in notices.records]
        metrics = worker.metrics()
        log = worker.log()
    finally:
        worker.stop()
    assert reg.current() == v1 and reg.history() == [v1]
    assert [v1, v2, v1] in seqs.values()
    assert all(seq in ([v1, v2, v1], [v1, v2], [v1]) for seq in seqs.values()), seqs
    assert metrics['streamrec_auto_rollbacks_total{outcome="done"}'] == 1
    assert metrics.get('streamrec_auto_rollbacks_total{outcome="skipped"}', 0) == 0
    assert f"AUTO-ROLLBACK done by this worker: CURRENT {v2} -> {v1}" in log
    (notice,) = [n for n in sent if n.action == "rollback"]
    assert (notice.model_version, notice.parent_version) == (v1, v2)
    assert notice.worker and notice.reason and notice.reason.startswith("automatic")
    assert notice.metrics["hit_rate_after"] < 0.5 * notice.metrics["hit_rate_before"]
    assert notice.metrics["outcomes_after"] == window
