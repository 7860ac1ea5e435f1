"""Worker state across restarts, against the REAL broker: the user-state table survives a
clean restart and a lost data dir (rebuilt from the changelog, each user in the partition of
their events), and a kill -9 mid-stream loses no event and double-counts none."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest
from worker_harness import (
    TopicReader,
    event_records,
    produce,
    rec_values,
    setup_topics_and_items,
    worker_process,
)

from schemas import Settings
from schemas.dlq import headers_dict
from schemas.recommendations import REDELIVERY_HEADER
from stream_app.kafka.io import read_lines
from stream_app.worker.process import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _events(world: Path, n: int) -> list[bytes]:
    return read_lines(world / "events.jsonl")[:n]


def _states(worker: WorkerProcess, users: set[str]) -> dict[str, dict]:
    out = {}
    for u in sorted(users):
        s = worker.state(u)
        assert s is not None, f"no state for {u}"
        out[u] = s
    return out


async def test_state_survives_restart_and_a_lost_data_dir(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = _events(tiny_world, 500)
    users = {json.loads(x)["user_id"] for x in events}
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs")
    async with TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs:
        worker.start()
        try:
            await worker.wait_ready()
            await produce(kafka_settings, kafka_settings.topics.events, event_records(events))
            await recs.wait_for(lambda r: len(r) >= len(events), 90)
            before = _states(worker, users)
        finally:
            assert worker.stop() == 0, worker.log()[-3000:]
        assert sum(s["n_events"] for s in before.values()) == len(events)

        worker.start()  # same data dir: local RocksDB + changelog
        try:
            await worker.wait_ready()
            assert _states(worker, users) == before
        finally:
            assert worker.stop() == 0

        # a replacement node: empty data dir, the table is rebuilt from the changelog topic
        worker.settings = worker.settings.with_overrides(data_dir=str(tmp_path / "fresh-data"))
        worker.start()
        try:
            await worker.wait_ready()
            assert _states(worker, users) == before
            # one more event per user: each must find its state in the partition of its events
            # (a state written to another changelog partition would start again from zero)
            extra = []
            for n, u in enumerate(sorted(users)):
                last = json.loads(
                    next(x for x in reversed(events) if json.loads(x)["user_id"] == u)
                )
                extra.append(
                    json.dumps(
                        {**last, "event_id": f"extra-{n}", "ts": "2027-01-01T00:00:00Z"}
                    ).encode()
                )
            await produce(kafka_settings, kafka_settings.topics.events, event_records(extra))
            await recs.wait_for(lambda r: len(r) >= len(events) + len(extra), 60)
            after = _states(worker, users)
        finally:
            worker.stop()
    for u in users:
        assert after[u]["n_events"] == before[u]["n_events"] + 1, u
        assert (
            after[u]["event_ids"][:-1]
            == before[u]["event_ids"][-(len(after[u]["event_ids"]) - 1) :]
        )


async def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = _events(tiny_world, 2400)
    ids_by_user: dict[str, list[str]] = defaultdict(list)
    for x in events:
        e = json.loads(x)
        ids_by_user[e["user_id"]].append(e["event_id"])
    all_ids = {i for ids in ids_by_user.values() for i in ids}
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs")
    async with (
        TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
        TopicReader(kafka_settings, kafka_settings.topics.dlq) as dlq,
    ):
        worker.start()
        try:
            await worker.wait_ready()
            stream = asyncio.create_task(
                produce(
                    kafka_settings, kafka_settings.topics.events, event_records(events), rate=400
                )
            )
            await recs.wait_for(lambda r: len(r) >= 600, 60)
            worker.kill9()
            killed_at = len(recs.records)
            await stream
            worker.start()
            await worker.wait_ready()

            def accounted(_: object) -> bool:
                done = {json.loads(r.value)["trigger_event_id"] for r in recs.records}
                return all_ids <= done | {
                    json.loads(r.value or b"{}").get("event_id") for r in dlq.records
                }

            await recs.wait_for(accounted, 120, "every event id accounted for")
            await asyncio.sleep(2.0)
            states = _states(worker, set(ids_by_user))
            metrics = worker.metrics()
        finally:
            worker.stop()
    assert killed_at < len(events), "the kill came too late to test anything"
    assert not dlq.records  # every event here is valid
    triggers = [d["trigger_event_id"] for d in rec_values(recs.records)]
    assert set(triggers) == all_ids
    for user, ids in ids_by_user.items():
        s = states[user]
        assert s["n_events"] == len(ids), (user, s["n_events"], len(ids))
        assert len(s["event_ids"]) == len(set(s["event_ids"])), user
        assert set(s["event_ids"]) == set(ids), user
    # A re-sent list for an event the restarted worker found in its state carries the
    # redelivery header, and the worker counts it; one sent between the broker's acks and
    # the state write at the kill is re-sent unmarked: at most the batches in flight then.
    marked = [r for r in recs.records if REDELIVERY_HEADER in headers_dict(list(r.headers))]
    assert len(marked) == metrics["streamrec_duplicate_events_total"]
    first_seen: set[str] = set()
    for r in recs.records:
        trigger = json.loads(r.value)["trigger_event_id"]
        if REDELIVERY_HEADER in headers_dict(list(r.headers)):
            assert trigger in first_seen, f"{trigger} marked redelivered on its first list"
        first_seen.add(trigger)
    unmarked = len(triggers) - len(all_ids) - len(marked)
    assert 0 <= unmarked <= 2 * kafka_settings.serving.batch_size, unmarked
