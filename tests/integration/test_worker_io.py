"""The worker's state I/O against the REAL broker: after a stream through ``streamrec worker``,
the table's changelog topic holds each user's latest state (the record a restored worker
reads), in the partition of the user's events, and ``/state/USER`` serves exactly the bytes
last written; a replacement worker with an empty data dir reads the same states back."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from worker_harness import (
    TopicReader,
    event_records,
    produce,
    setup_topics_and_items,
    worker_process,
)

from schemas import Settings
from schemas.recommendations import REDELIVERY_HEADER
from stream_app.core.interests import state_from_bytes
from stream_app.kafka.io import read_lines
from stream_app.worker.app import STATE_TABLE
from stream_app.worker.process import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def latest_per_key(records: list[Any]) -> dict[str, Any]:
    """The last changelog record of each key (highest offset of its partition)."""
    out: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key.decode()] = r
    return out


def states(worker: WorkerProcess, users: set[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for u in sorted(users):
        s = worker.state(u)
        assert s is not None and s["found"], f"/state/{u}: no state"
        out[u] = s
    return out


async def test_the_changelog_holds_each_users_latest_state_and_state_serves_it(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = read_lines(tiny_world / "events.jsonl")[:400]
    first, second = events[:250], events[250:]  # two rounds: a user's latest state moves on
    by_user: dict[str, list[str]] = defaultdict(list)
    for line in events:
        e = json.loads(line)
        by_user[e["user_id"]].append(e["event_id"])
    users = set(by_user)
    changelog = f"{kafka_settings.app_id}-{STATE_TABLE}-changelog"
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs")

    def caught_up(records: list[Any]) -> bool:  # every user's last event is in the changelog
        latest = latest_per_key(records)
        return all(
            u in latest and state_from_bytes(latest[u].value).n_events == len(ids)
            for u, ids in by_user.items()
        )

    async with (
        TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
        TopicReader(kafka_settings, changelog) as log,
    ):
        worker.start()
        try:
            await worker.wait_ready()
            topic = kafka_settings.topics.events
            sent = await produce(kafka_settings, topic, event_records(first))
            await recs.wait_for(lambda r: len(r) >= len(first), 90, "first round")
            sent += await produce(kafka_settings, topic, event_records(second))
            await recs.wait_for(lambda r: len(r) >= len(events), 90, "second round")
            await log.wait_for(caught_up, 30, "each user's latest state in the changelog")
            served = states(worker, users)
        finally:
            assert worker.stop() == 0, worker.log()[-3000:]
        latest = latest_per_key(log.records)

        # a replacement node: empty data dir, the table restored from the changelog alone
        worker.settings = worker.settings.with_overrides(data_dir=str(tmp_path / "fresh-data"))
        worker.start()
        try:
            await worker.wait_ready()
            restored = states(worker, users)
        finally:
            worker.stop()

    events_partition = {
        json.loads(line)["user_id"]: s.partition for line, s in zip(events, sent, strict=True)
    }
    for u, ids in by_user.items():
        raw = latest[u].value
        state = state_from_bytes(raw)
        assert state.n_events == len(ids), u
        assert state.event_ids == ids[-len(state.event_ids) :], u  # the newest, in order
        assert latest[u].partition == events_partition[u], u  # the partition of their events
        sha = hashlib.sha256(raw).hexdigest()
        assert served[u]["sha256"] == sha, f"/state/{u} is not the last state written"
        assert restored[u]["sha256"] == sha, f"{u}: the restored worker reads another state"
    assert set(latest) == users  # no state for anyone else
    writes: dict[str, int] = defaultdict(int)
    for r in log.records:
        writes[r.key.decode()] += 1
    both = {json.loads(x)["user_id"] for x in first} & {json.loads(x)["user_id"] for x in second}
    assert both and all(writes[u] >= 2 for u in both)  # written in each round: latest wins
    assert not [r for r in recs.records if REDELIVERY_HEADER in dict(r.headers)]
