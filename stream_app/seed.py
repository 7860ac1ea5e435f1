"""``streamrec seed``: what the compose stack's seed service does, for a stack with no data of
its own yet. Against the configured broker and registry:

1. data: the given catalogue and events, else a synthetic shop (as ``streamrec demo``);
2. a model: trained into the registry if it has no CURRENT version (skipped when it has one);
3. the catalogue sent to the items topic (compacted: sending it again changes nothing);
4. a steady event stream (``demo.rate`` per second) until stopped: the last fifth of the
   events (those a model trains on least), again and again, each round with fresh event ids
   and the current time, so workers see new events, not redeliveries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from schemas.settings import Settings
from stream_app.demo import Demo
from stream_app.kafka import io as kafka_io

STREAM_FRACTION = 0.2
REPORT_EVERY_S = 30.0


def fresh_events(lines: list[bytes], round_no: int, now_ms: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each event with an id unique to the round and ``ts`` = now."""
    for line in lines:
        obj = json.loads(line)
        obj["event_id"] = f"{obj['event_id']}.r{round_no}"
        obj["ts"] = now_ms
        yield obj["user_id"].encode(), json.dumps(obj, separators=(",", ":")).encode()


async def stream_events(settings: Settings, events: Path, console: Console) -> None:
    from aiokafka import AIOKafkaProducer

    lines = kafka_io.read_lines(events)
    tail = lines[int(len(lines) * (1 - STREAM_FRACTION)) :] or lines
    rate = settings.demo.rate
    producer = AIOKafkaProducer(**settings.kafka.client_kwargs(), linger_ms=5)
    await kafka_io.start_client(producer, settings)
    try:
        sent, start, reported = 0, time.perf_counter(), time.monotonic()
        for round_no in range(1, 1 << 62):
            for key, value in fresh_events(tail, round_no, int(time.time() * 1000)):
                await producer.send(settings.topics.events, value, key=key)
                sent += 1
                ahead = sent / rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if time.monotonic() - reported > REPORT_EVERY_S:
                    reported = time.monotonic()
                    console.print(f"· {sent} events sent to {settings.topics.events}")
    finally:
        await producer.stop()


def run_seed(
    settings: Settings,
    console: Console,
    items_path: Path | None = None,
    events_path: Path | None = None,
    stream: bool = True,
) -> None:
    settings.demo.workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(settings, console, items_path, events_path)
    items, events = demo.data()
    demo.model(items, events)
    asyncio.run(kafka_io.ensure_topics(settings))
    sent = asyncio.run(
        kafka_io.produce_lines(
            settings, kafka_io.read_lines(items), settings.topics.items, key_field="item_id"
        )
    )
    console.print(f"· catalogue: {sent.sent} items on topic {settings.topics.items}")
    if stream:
        console.print(f"· streaming events at {settings.demo.rate:g}/s until stopped")
        asyncio.run(stream_events(settings, events, console))
