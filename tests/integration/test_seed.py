"""``streamrec seed`` (the compose stack's seed service) against the REAL broker: with a model
already in the registry it trains nothing, sends the catalogue, then streams fresh events
(new ids, the current time) at the configured rate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from worker_harness import TopicReader

from schemas import Settings, decode_event
from stream_app.kafka.io import read_lines
from stream_app.seed import fresh_events, run_seed, stream_events

pytestmark = [pytest.mark.kafka]


def test_fresh_events_get_round_ids_and_the_current_time():
    line = b'{"event_id":"e1","event_type":"click","user_id":"u1","item_id":"i1","ts":5}'
    ((key, value),) = list(fresh_events([line], 3, 1_700_000_000_000))
    ev = decode_event(value)
    assert key == b"u1" and ev.event_id == "e1.r3" and ev.ts.timestamp() == 1_700_000_000


async def test_seed_sends_the_catalogue_and_a_steady_stream(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    settings = kafka_settings.with_overrides(
        registry_dir=str(tiny_registry), **{"demo.rate": 200.0, "demo.workdir": str(tmp_path)}
    )
    console = Console(file=open(tmp_path / "seed.log", "w"))
    items, events = tiny_world / "items.jsonl", tiny_world / "events.jsonl"
    versions = sorted(p.name for p in tiny_registry.iterdir())
    await asyncio.to_thread(run_seed, settings, console, items, events, False)
    assert sorted(p.name for p in tiny_registry.iterdir()) == versions, "trained nothing"
    async with TopicReader(settings, settings.topics.items) as got_items:
        await got_items.wait_for(lambda r: len(r) >= len(read_lines(items)), 30, "items")
    async with TopicReader(settings, settings.topics.events) as got:
        t0 = time.time()
        task = asyncio.create_task(stream_events(settings, events, console))
        await got.wait_for(lambda r: len(r) >= 200, 30, "events")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        elapsed = time.time() - t0
    evs = [decode_event(r.value) for r in got.records]
    assert all(e.event_id.endswith(".r1") for e in evs)
    assert all(abs(e.ts.timestamp() - t0) < 60 for e in evs)
    assert len(got.records) <= 200 * elapsed + 50, "the configured rate, not as fast as it can"
    assert all(r.key.decode() == json.loads(r.value)["user_id"] for r in got.records)
