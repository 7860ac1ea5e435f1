"""BatchPublisher against the REAL broker: records land where ``send`` would put them, at the
offsets reported; batches too large for a topic are split, dead letters cut down, other
too-large records refused; a broker outage is survived by resending, or ends in PublishError."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import Settings
from schemas.dlq import headers_dict
from stream_app.kafka import local as kafka_local
from stream_app.worker.dlq import SOURCE_BYTES, TRUNCATED, Where, dead_letter
from stream_app.worker.publish import BatchPublisher, PublishError, Record

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]


async def make_topic(broker: str, partitions: int, **configs: str) -> str:
    name = f"pub-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return name


async def read_all(broker: str, topic: str, partitions: int, expect: int) -> list:
    c = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest")
    await c.start()
    try:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        got: list = []
        async with asyncio.timeout(20):
            while len(got) < expect:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got.extend(msgs)
        extra = await c.getmany(timeout_ms=500)  # nothing beyond what was published
        got.extend(m for msgs in extra.values() for m in msgs)
        return got
    finally:
        await c.stop()


@pytest.fixture
async def producer(kafka_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all", linger_ms=2)
    await p.start()
    yield p
    await p.stop()


def pub(producer: AIOKafkaProducer, **kw: int | float) -> BatchPublisher:
    opts = {"max_message_bytes": 1_000_000, "max_request_bytes": 16 * 1024 * 1024, **kw}
    return BatchPublisher(producer, **opts)  # type: ignore[arg-type]


async def test_records_land_where_send_puts_them_at_the_reported_offsets(
    kafka_broker: str, producer: AIOKafkaProducer
):
    topic = await make_topic(kafka_broker, 4)
    keys = [f"user-{i % 37}".encode() for i in range(300)]
    records = [
        Record(topic, k, b"v%d" % i, headers=[("n", str(i).encode())]) for i, k in enumerate(keys)
    ]
    records.append(Record(topic, None, b"no key"))
    await pub(producer).publish(records)

    got = await read_all(kafka_broker, topic, 4, len(records))
    assert len(got) == len(records)
    at = {(m.partition, m.offset): m for m in got}
    for rec in records:
        m = at[(rec.partition, rec.offset)]
        assert (m.key, m.value) == (rec.key, rec.value)
        assert list(m.headers) == rec.headers
    # the partition of each key is the one AIOKafkaProducer.send (and faust) picks
    check = await make_topic(kafka_broker, 4)
    for key in sorted(set(keys)):
        meta = await (await producer.send(check, b"x", key=key))
        assert meta.partition == next(r.partition for r in records if r.key == key), key
    # one user's records keep their order (offsets rise in input order)
    for key in set(keys):
        offsets = [r.offset for r in records if r.key == key]
        assert offsets == sorted(offsets)


async def test_a_batch_too_large_for_the_topic_is_split_and_every_record_lands(
    kafka_broker: str, producer: AIOKafkaProducer, caplog: pytest.LogCaptureFixture
):
    topic = await make_topic(kafka_broker, 1, **{"max.message.bytes": "4096"})
    records = [Record(topic, b"user-1", bytes([65 + i]) * 1500) for i in range(8)]
    await pub(producer).publish(records)

    got = await read_all(kafka_broker, topic, 1, 8)
    assert [m.value for m in sorted(got, key=lambda m: m.offset)] == [r.value for r in records]
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    assert all(r.alone for r in records)  # they had to go one per batch


async def test_a_dead_letter_too_large_is_cut_down_and_marked(
    kafka_broker: str, producer: AIOKafkaProducer
):
    topic = await make_topic(kafka_broker, 1, **{"max.message.bytes": "8192"})
    raw = b"z" * 50_000
    dead = dead_letter(ValueError("bad event"), b"user-9", raw, Where("events", 3, 42), "schema")
    small = dead_letter(ValueError("fine"), b"user-8", b"ok", Where("events", 1, 7), "schema")
    records = [
        Record(topic, dead.key, dead.value, headers=dead.headers, dead=dead),
        Record(topic, small.key, small.value, headers=small.headers, dead=small),
    ]
    await pub(producer, max_message_bytes=20_000).publish(records)

    got = {m.key: m for m in await read_all(kafka_broker, topic, 1, 2)}
    big = headers_dict(list(got[b"user-9"].headers))
    # 50 kB -> refused; 20 kB (max_message_bytes) -> refused; headers only -> accepted
    assert got[b"user-9"].value == b""
    assert big[TRUNCATED] == "true"
    assert big[SOURCE_BYTES] == "50000"
    assert big["error.reason"] == "schema"
    assert big["source.offset"] == "42"
    assert got[b"user-8"].value == b"ok"
    assert TRUNCATED not in headers_dict(list(got[b"user-8"].headers))


async def test_a_dead_letter_above_the_request_limit_is_cut_before_sending(
    kafka_broker: str, producer: AIOKafkaProducer
):
    topic = await make_topic(kafka_broker, 1)
    dead = dead_letter(ValueError("huge"), b"u", b"q" * 300_000, Where("events", 0, 1))
    rec = Record(topic, dead.key, dead.value, headers=dead.headers, dead=dead)
    await pub(producer, max_message_bytes=100_000, max_request_bytes=200_000).publish([rec])
    (m,) = await read_all(kafka_broker, topic, 1, 1)
    assert len(m.value) == 100_000
    assert headers_dict(list(m.headers))[SOURCE_BYTES] == "300000"


async def test_a_recommendation_too_large_raises_publish_error(
    kafka_broker: str, producer: AIOKafkaProducer
):
    topic = await make_topic(kafka_broker, 1, **{"max.message.bytes": "4096"})
    with pytest.raises(PublishError, match="too large"):
        await pub(producer).publish([Record(topic, b"user-1", b"r" * 10_000)])


# -- a broker of our own, stopped and restarted ---------------------------------------------
@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    base = Settings()
    port, data = kafka_local.free_port(pair=True), tmp_path_factory.mktemp("kafka-own")
    kafka_local.start(port, data, base.kafka_version, base.cache_dir, partitions=2)
    try:
        yield f"localhost:{port}", port, data
    finally:
        kafka_local.stop(data)


def restart(port: int, data: Path) -> None:
    base = Settings()
    kafka_local.start(port, data, base.kafka_version, base.cache_dir, partitions=2)


@contextlib.asynccontextmanager
async def outage(
    broker: str, data: Path, timeout_ms: int, **kw: float
) -> AsyncIterator[tuple[BatchPublisher, str]]:
    """A publisher that has published once to a new topic (metadata known), then the broker
    is stopped."""
    topic = await make_topic(broker, 2)
    prod = AIOKafkaProducer(bootstrap_servers=broker, acks="all", request_timeout_ms=timeout_ms)
    await prod.start()
    try:
        publisher = pub(prod, **kw)
        await publisher.publish([Record(topic, b"warm", b"up")])
        await asyncio.to_thread(kafka_local.stop, data)
        yield publisher, topic
    finally:
        await prod.stop()


@pytest.mark.slow
async def test_records_are_resent_after_a_broker_outage(
    own_broker: tuple[str, int, Path], caplog: pytest.LogCaptureFixture
):
    broker, port, data = own_broker
    records = [Record("", f"user-{i}".encode(), b"after %d" % i) for i in range(50)]
    async with outage(broker, data, 2000, retries=8, backoff_s=1.0) as (publisher, topic):
        for r in records:
            r.topic = topic
        with caplog.at_level(logging.WARNING, logger="streamrec.worker"):
            task = asyncio.ensure_future(publisher.publish(records))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(restart, port, data)
            await asyncio.wait_for(task, 90)
        assert "failed (attempt 1)" in caplog.text  # the resend path really ran
    got = await read_all(broker, topic, 2, 51)
    assert {m.value for m in got} >= {r.value for r in records}
    assert all(r.offset >= 0 for r in records)


@pytest.mark.slow
async def test_publish_error_when_the_broker_stays_down(own_broker: tuple[str, int, Path]):
    broker, port, data = own_broker
    try:
        async with outage(broker, data, 1500, retries=2, backoff_s=0.2) as (publisher, topic):
            with pytest.raises(PublishError, match="not acked after 2 attempts"):
                await publisher.publish([Record(topic, b"k", b"lost?")])
    finally:
        await asyncio.to_thread(restart, port, data)
