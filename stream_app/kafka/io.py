"""Kafka plumbing shared by the CLI, the worker, replay and benchmarks: topic creation,
file -> topic producing (rate-limited), topic -> records consuming. All clients get the
security settings from ``Settings.kafka.client_kwargs()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.recommendations import ModelUpdate
from schemas.settings import Settings

ACCESS_TIMEOUT_S = 10.0


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered a client's start; the message names the broker setting."""


async def start_client(client: Any, settings: Settings) -> None:
    """Start an aiokafka client; when that fails, close it (no "Unclosed AIOKafkaConsumer" at
    exit) and raise ``BrokerUnavailable`` in one line that says why: aiokafka reports a
    rejected login, an untrusted certificate or another protocol all as "Unable to
    bootstrap", so ``access.check_access`` connects once more to find out."""
    from stream_app.kafka.access import KafkaAccessError, check_access

    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its "Unable connect" lines: our one line says it
    try:
        await client.start()
    except Exception as exc:  # noqa: BLE001 - any failure to start: no usable broker
        with contextlib.suppress(Exception):
            await client.stop()
        msg = (
            f"no Kafka broker answers at {settings.kafka.broker} ({type(exc).__name__}); set "
            "kafka.broker (--broker or STREAMREC_KAFKA__BROKER) or start a local one with "
            "`streamrec kafka start`"
        )
        try:
            await check_access(settings.kafka, ACCESS_TIMEOUT_S)
        except KafkaAccessError as why:
            msg = str(why)
        raise BrokerUnavailable(msg) from None
    finally:
        quiet.setLevel(level)


def topic_specs(settings: Settings) -> list[NewTopic]:
    t = settings.topics
    return [
        NewTopic(t.events, t.partitions, 1),
        NewTopic(t.recommendations, t.partitions, 1),
        NewTopic(t.dlq, 1, 1),
        NewTopic(t.items, 1, 1, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(t.model_updates, 1, 1),
    ]


async def ensure_topics(settings: Settings, specs: list[NewTopic] | None = None) -> list[str]:
    """Create missing topics (existing ones are left as they are). Returns those created."""
    specs = topic_specs(settings) if specs is None else specs
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())
    await start_client(admin, settings)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            try:
                await admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    if created:
        await _wait_for_leaders(settings, created)
    return created


async def _wait_for_leaders(settings: Settings, topics: list[str], timeout: float = 20.0) -> None:
    # consumer.topics() fetches metadata into a new object without updating the client's
    # cluster view, so consumer.partitions_for_topic() stayed None until the timeout; the
    # producer's partitions_for() waits for the topic's metadata itself.
    producer = AIOKafkaProducer(**settings.kafka.client_kwargs())
    await start_client(producer, settings)
    try:
        async with asyncio.timeout(timeout):
            for t in topics:
                await producer.partitions_for(t)
    except TimeoutError:
        pass
    finally:
        await producer.stop()


def key_for(value: dict[str, Any], key_field: str | None) -> bytes | None:
    """Kafka key: the named field, else user_id (events) or item_id (items)."""
    for name in (key_field,) if key_field else ("user_id", "item_id"):
        if isinstance(value, dict) and value.get(name) is not None:
            return str(value[name]).encode()
    return None


@dataclass
class ProduceResult:
    sent: int
    seconds: float
    unparsable: int


async def produce_lines(
    settings: Settings,
    lines: list[bytes],
    topic: str,
    rate: float | None = None,
    key_field: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ProduceResult:
    """Send each line as one message (bytes as-is; the key parsed from it when it is JSON).

    ``rate`` = messages per second (None: as fast as possible). Lines that are not JSON are
    still sent (keyless): producing bad input on purpose is a legitimate test.
    """
    producer = AIOKafkaProducer(
        **settings.kafka.client_kwargs(),
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=max(settings.max_message_bytes * 4, 1_048_576),
        acks="all",
        enable_idempotence=True,
    )
    await start_client(producer, settings)
    unparsable = 0
    start = time.perf_counter()
    pending: list[asyncio.Future[Any]] = []
    try:
        for i, line in enumerate(lines):
            try:
                key = key_for(json.loads(line), key_field)
            except (ValueError, UnicodeDecodeError):
                key, unparsable = None, unparsable + 1
            pending.append(await producer.send(topic, line, key=key))
            if rate:
                ahead = (i + 1) / rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if on_progress is not None and (i + 1) % 500 == 0:
                on_progress(i + 1)
        await asyncio.gather(*pending)
        if on_progress is not None:
            on_progress(len(lines))
    finally:
        await producer.stop()
    return ProduceResult(len(lines), time.perf_counter() - start, unparsable)


def read_lines(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        return [line.rstrip(b"\r\n") for line in fh if line.strip()]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def as_dict(self) -> dict[str, Any]:
        try:
            value: Any = json.loads(self.value) if self.value is not None else None
        except ValueError:
            value = (self.value or b"").decode("utf-8", "replace")
        out: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "value": value,
        }
        if self.headers:
            out["headers"] = {k: v.decode("utf-8", "replace") for k, v in self.headers}
        return out


async def consume_records(
    settings: Settings,
    topic: str,
    limit: int | None = None,
    from_beginning: bool = False,
    idle_timeout: float | None = 10.0,
    group_id: str | None = None,
) -> AsyncIterator[Record]:
    """Yield records until ``limit`` or no new record for ``idle_timeout`` seconds."""
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka.client_kwargs(),
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await start_client(consumer, settings)
    seen = 0
    try:
        last = time.monotonic()
        while limit is None or seen < limit:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            if not batch:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                continue
            last = time.monotonic()
            for tp, msgs in batch.items():
                for m in msgs:
                    yield Record(
                        tp.topic,
                        tp.partition,
                        m.offset,
                        m.key,
                        m.value,
                        tuple(m.headers or ()),
                        m.timestamp,
                    )
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
    finally:
        await consumer.stop()


UNKNOWN_TOPIC = 3  # Kafka error code UNKNOWN_TOPIC_OR_PARTITION


async def topic_partitions(settings: Settings, topic: str, timeout: float = 30.0) -> list[int]:
    """Partition ids of ``topic`` from the broker's metadata (admin DescribeTopics, which never
    auto-creates the topic); [] when the topic does not exist. Waits while the topic exists but
    its partitions are not listed yet (just created, leaders being elected).

    Not ``consumer.partitions_for_topic()``: an unsubscribed consumer has no metadata for the
    topic, and ``consumer.topics()`` fetches it into a separate object without updating the
    consumer's view, so that returned None and callers read nothing."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())
    await start_client(admin, settings)
    try:
        deadline = time.monotonic() + timeout
        while True:
            (desc,) = await admin.describe_topics([topic])
            parts = sorted(p["partition"] for p in desc.get("partitions", []))
            if parts:
                return parts
            if desc.get("error_code") == UNKNOWN_TOPIC:
                return []
            if time.monotonic() > deadline:
                msg = (
                    f"{topic}: no partitions listed within {timeout:.0f} s "
                    f"(error code {desc.get('error_code')})"
                )
                raise TimeoutError(msg)
            await asyncio.sleep(0.25)
    finally:
        await admin.close()


async def read_compacted(
    settings: Settings, topic: str, timeout: float = 30.0
) -> dict[bytes, bytes]:
    """Latest value per key of a (compacted) topic, read from the beginning up to its end
    offsets at call time; a null value (tombstone) removes the key. {} for a missing topic."""
    from aiokafka import TopicPartition

    parts = await topic_partitions(settings, topic, timeout)
    out: dict[bytes, bytes] = {}
    if not parts:
        return out
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_kwargs(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await start_client(consumer, settings)
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                msg = f"{topic}: not read to its end within {timeout:.0f} s"
                raise TimeoutError(msg)
            batch = await consumer.getmany(*tps, timeout_ms=500, max_records=5000)
            for tp in tps:  # partition by partition: one key lives in one partition
                for m in batch.get(tp, ()):
                    if m.offset >= end[tp] or m.key is None:
                        continue
                    if m.value is None:
                        out.pop(m.key, None)
                    else:
                        out[m.key] = m.value
    finally:
        await consumer.stop()
    return out


NOTICE_KEY = b"model"


async def send_notice(settings: Settings, notice: ModelUpdate, timeout_s: float = 10.0) -> None:
    """One ``model-updates`` notice, acked by the broker (a producer of its own, stopped even
    when it could not start: no unclosed-producer warnings when the broker is down)."""
    producer = AIOKafkaProducer(
        **settings.kafka.client_kwargs(), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(producer.start(), timeout_s)
        await asyncio.wait_for(
            producer.send_and_wait(
                settings.topics.model_updates, notice.model_dump_json().encode(), key=NOTICE_KEY
            ),
            timeout_s,
        )
    finally:
        await producer.stop()
