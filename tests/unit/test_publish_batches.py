"""BatchPublisher's pure parts (no broker): batches built with aiokafka's real BatchBuilder
from an unstarted producer, dead letters cut down step by step, highest offsets per partition."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from stream_app.worker.dlq import TRUNCATED, Where, dead_letter
from stream_app.worker.publish import (
    SHRINK_BYTES,
    BatchPublisher,
    PublishError,
    Record,
    last_offsets,
)


@pytest.fixture
async def publisher() -> BatchPublisher:
    producer = AIOKafkaProducer(bootstrap_servers="localhost:1", max_batch_size=4096)
    return BatchPublisher(producer, max_message_bytes=1_000_000, max_request_bytes=2_000_000)


async def test_batches_group_per_partition_in_order_and_cut_when_full(publisher: BatchPublisher):
    recs = [Record("t", b"k", b"x" * 1500, partition=i % 2) for i in range(8)]
    recs.append(Record("u", b"k", b"small", partition=0))
    batches = publisher._batches(recs)
    layout = [[recs.index(r) for r in rs] for _, rs in batches]
    # 4 KiB batches hold two 1.5 kB records: partition 0 gets [0, 2], [4, 6]; 1: [1, 3], [5, 7]
    assert sorted(layout) == [[0, 2], [1, 3], [4, 6], [5, 7], [8]]
    assert all(b.closed() for b, _ in batches)
    assert [b.record_count() for b, rs in batches] == [len(rs) for _, rs in batches]


async def test_records_marked_alone_get_a_batch_each(publisher: BatchPublisher):
    recs = [Record("t", b"k", b"v%d" % i, partition=0) for i in range(4)]
    recs[1].alone = recs[2].alone = True
    layout = [[recs.index(r) for r in rs] for _, rs in publisher._batches(recs)]
    assert layout == [[0], [1], [2], [3]]


async def test_a_dead_letter_is_cut_to_max_message_bytes_then_64k_then_headers_only(
    publisher: BatchPublisher,
):
    dead = dead_letter(ValueError("x"), b"k", b"a" * 3_000_000, Where("events", 2, 9), "schema")
    rec = Record("dlq", dead.key, dead.value, headers=dead.headers, dead=dead)
    sizes = []
    for _ in range(3):
        publisher._shrink(rec, "test")
        sizes.append(len(rec.value or b""))
        assert dict(rec.headers)[TRUNCATED] == b"true"
    assert sizes == [1_000_000, SHRINK_BYTES, 0]
    assert len([h for h in rec.headers if h[0] == TRUNCATED]) == 1  # not piled up
    with pytest.raises(PublishError, match="too large"):
        publisher._shrink(rec, "test")


async def test_a_record_that_is_not_a_dead_letter_is_never_cut(publisher: BatchPublisher):
    rec = Record("recs", b"k", b"r" * 100)
    with pytest.raises(PublishError, match="recs"):
        publisher._shrink(rec, "test")
    assert rec.value == b"r" * 100


def test_last_offsets_keeps_the_highest_acked_offset_per_partition():
    recs = [
        Record("c", b"a", b"", partition=0, offset=5),
        Record("c", b"b", b"", partition=0, offset=9),
        Record("c", b"c", b"", partition=1, offset=2),
        Record("d", b"d", b"", partition=0, offset=1),
        Record("c", b"e", b"", partition=1),  # not acked
    ]
    assert last_offsets(recs) == {("c", 0): 9, ("c", 1): 2, ("d", 0): 1}


async def test_retries_below_one_is_refused():
    producer = AIOKafkaProducer(bootstrap_servers="localhost:1")
    with pytest.raises(ValueError, match="retries: expected >= 1, got 0"):
        BatchPublisher(producer, max_message_bytes=1, max_request_bytes=1, retries=0)
