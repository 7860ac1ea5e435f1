"""``kafka_io.read_compacted`` against the REAL broker: a compacted items topic (several
partitions) with updates, a tombstone and a ``deleted`` item reads back as the latest value per
key; the fine-tuning job's catalogue loader built on it drops deleted items."""

from __future__ import annotations

import json

import pytest
from aiokafka.admin import NewTopic
from worker_harness import produce

from schemas import Settings
from stream_app.finetune.job import load_catalogue
from stream_app.kafka.io import ensure_topics, read_compacted

pytestmark = pytest.mark.kafka


def item(item_id: str, title: str, deleted: bool = False) -> bytes:
    return json.dumps(
        {"item_id": item_id, "title": title, "categories": ["c"], "deleted": deleted}
    ).encode()


async def test_latest_value_per_key_tombstones_removed(kafka_settings: Settings):
    topic = kafka_settings.topics.items
    await ensure_topics(
        kafka_settings, [NewTopic(topic, 3, 1, topic_configs={"cleanup.policy": "compact"})]
    )
    keys = [f"item-{n}" for n in range(12)]  # spread over the 3 partitions
    first = [(k.encode(), item(k, f"{k} v1")) for k in keys]
    updates = [
        (b"item-0", item("item-0", "item-0 v2")),
        (b"item-5", item("item-5", "item-5 v2")),
        (b"item-0", item("item-0", "item-0 v3")),
        (b"item-3", None),  # tombstone
        (b"item-7", item("item-7", "item-7", deleted=True)),
    ]
    sent = await produce(kafka_settings, topic, first + updates)
    assert len({s.partition for s in sent}) > 1
    latest = await read_compacted(kafka_settings, topic, timeout=20)
    assert set(latest) == {k.encode() for k in keys} - {b"item-3"}
    assert json.loads(latest[b"item-0"])["title"] == "item-0 v3"
    assert json.loads(latest[b"item-5"])["title"] == "item-5 v2"
    assert json.loads(latest[b"item-1"])["title"] == "item-1 v1"
    assert json.loads(latest[b"item-7"])["deleted"] is True
    catalogue = {it.item_id: it for it in await load_catalogue(kafka_settings)}
    assert set(catalogue) == set(keys) - {"item-3", "item-7"}
    assert catalogue["item-0"].title == "item-0 v3"


async def test_a_missing_topic_reads_as_empty_and_an_empty_topic_too(kafka_settings: Settings):
    assert await read_compacted(kafka_settings, f"{kafka_settings.topics.items}-none", 5) == {}
    await ensure_topics(kafka_settings)
    assert await read_compacted(kafka_settings, kafka_settings.topics.items, 10) == {}
