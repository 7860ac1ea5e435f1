"""The events topic's offsets are committed only for events the agent published
(``stream_app/worker/acks.py``), on faust's REAL consumer bookkeeping (``Consumer.ack`` and
``_new_offset``, the offset faust would commit): an event faust acks without it being handled
(a rebalance skip) is not committed, while plain faust would commit past it; and, on faust's
real ``getmany`` / ``seek`` bookkeeping, a fetch that skips offsets is sought back over
(``FetchRepair``) so the skipped events come again instead of being gap-filled and committed."""

from __future__ import annotations

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from schemas.settings import Settings
from stream_app.worker.acks import PublishedGate, guarded_consumer

EVENTS = Settings().topics.events


def _message(topic: str, offset: int) -> ConsumerMessage:
    return ConsumerMessage(
        topic, 0, offset, 0.0, 0, [], b"u", b"{}", None, 1, 2, tp=TP(topic, 0), generation_id=1
    )


def _consumer(app, cls: type):
    # the conductor fills this when the agents subscribe (at start): acks count for these
    app.topics._acking_topics.update({EVENTS, "some-other-topic"})
    return cls(
        app.transport,
        callback=app.topics.on_message,
        on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned,
        beacon=app.beacon,
    )


def _offset_after_skip(consumer, tp: TP, committed: int, skipped: int) -> object:
    """The offset faust would commit after acking ``skipped`` with ``committed`` committed."""
    consumer._committed_offset[tp] = committed
    consumer.ack(_message(tp.topic, skipped))
    return consumer._new_offset(tp)


def test_plain_faust_commits_past_a_skipped_event_and_the_gate_does_not():
    from stream_app.worker.app import create_app

    app = create_app(Settings())
    tp = TP(EVENTS, 0)
    # committed = 100 (the next event to read); event 100 is still in the agent's take buffer
    # and faust skips-and-acks event 101 (fetched before a rebalance): plain faust would commit
    # 102 and event 101 would never be handled.
    plain = _consumer(app, AIOKafkaConsumer)
    assert _offset_after_skip(plain, tp, 100, 101) == 102

    gate = PublishedGate([EVENTS])
    guarded = _consumer(app, guarded_consumer(AIOKafkaConsumer, gate))
    assert _offset_after_skip(guarded, tp, 100, 101) is None
    assert gate.withheld == 1


def test_published_events_are_committed_in_order_and_other_topics_untouched():
    from stream_app.worker.app import create_app

    app = create_app(Settings())
    gate = PublishedGate([EVENTS])
    consumer = _consumer(app, guarded_consumer(AIOKafkaConsumer, gate))
    tp = TP(EVENTS, 0)
    consumer._committed_offset[tp] = 10
    batch = [_message(EVENTS, o) for o in range(10, 15)]
    gate.mark(batch)
    assert all(consumer.ack(m) for m in batch)
    assert consumer._new_offset(tp) == 15
    # an unmarked one after them (skipped) is taken off the unacked set, never committed
    late = _message(EVENTS, 15)
    consumer._unacked_messages.add(late)
    assert consumer.ack(late) is False and late.acked and late not in consumer._unacked_messages
    assert consumer._new_offset(tp) is None and gate.withheld == 1
    # a marked message is let through once; topics outside the gate are faust's business
    other = TP("some-other-topic", 0)
    consumer._committed_offset[other] = 0
    assert consumer.ack(_message(other.topic, 0)) is True
    assert consumer._new_offset(other) == 1


def test_the_worker_app_builds_its_consumer_through_the_gate():
    from stream_app.worker.app import create_app

    app = create_app(Settings())
    assert type(app.consumer).__name__.startswith("Guarded")
    assert isinstance(app.consumer, AIOKafkaConsumer)


def _records(tp: TP, offsets: list[int]) -> list:
    from aiokafka.structs import ConsumerRecord

    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"u", b"{}", None, 1, 2, ())
        for o in offsets
    ]


def _fetching_consumer(fetches: list[dict]):
    """A guarded consumer with a FetchRepair whose broker fetches are ``fetches`` (one
    ``{tp: offsets}`` per ``getmany``) and whose seeks are recorded: faust's REAL getmany,
    seek and seek_to_committed bookkeeping run on top."""
    from stream_app.worker.acks import FetchRepair
    from stream_app.worker.app import create_app

    app = create_app(Settings())
    repair = FetchRepair([EVENTS])
    consumer = _consumer(app, guarded_consumer(AIOKafkaConsumer, PublishedGate([EVENTS]), repair))
    sought: list[tuple[TP, int]] = []
    queue = list(fetches)

    async def wait_next_records(timeout):
        batch = queue.pop(0)
        return {tp: _records(tp, offs) for tp, offs in batch.items()}, set(batch)

    async def _seek(tp, offset):
        sought.append((tp, offset))

    consumer._wait_next_records = wait_next_records
    consumer._seek = _seek
    consumer.highwater = lambda tp: 0
    return consumer, repair, sought


async def _drain(consumer, n: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(n):
        async for tp, m in consumer.getmany(1.0):
            out.append((tp.partition, m.offset))
    return out


async def test_a_fetch_skip_is_sought_back_over_and_the_events_come_again_in_order():
    p0, p1 = TP(EVENTS, 0), TP(EVENTS, 1)
    consumer, repair, sought = _fetching_consumer(
        [
            {p0: [100, 101], p1: [7]},
            {p0: [131, 132, 133], p1: [8]},  # 102..130 skipped by the fetch
            {p0: [102, 103]},  # after the seek back: from 102 again
        ]
    )
    repair.restart({p0: 100, p1: 7})  # as faust's seek to the committed offsets leaves it
    got = await _drain(consumer, 3)
    assert got == [(0, 100), (1, 7), (0, 101), (1, 8), (0, 102), (0, 103)]
    assert sought == [(p0, 102)] and repair.repairs == 1
    assert consumer._read_offset[p0] == 102  # faust reads on from there


async def test_a_real_gap_is_accepted_after_one_seek_back():
    p0 = TP(EVENTS, 0)
    consumer, repair, sought = _fetching_consumer(
        [{p0: [10, 11]}, {p0: [15, 16]}, {p0: [15, 16, 17]}, {p0: [30]}]
    )
    repair.restart({p0: 10})
    got = await _drain(consumer, 3)
    # 12..14 hold nothing (transaction markers): after one seek back the records go through
    assert got == [(0, 10), (0, 11), (0, 15), (0, 16), (0, 17)]
    assert sought == [(p0, 12)] and repair.repairs == 1 and repair.real_gaps == 1
    # a later skip is a new one: sought back over again
    assert await _drain(consumer, 1) == [] and sought[-1] == (p0, 18) and repair.repairs == 2


async def test_other_topics_and_partitions_without_a_position_pass_untouched():
    other, p2 = TP("some-other-topic", 0), TP(EVENTS, 2)
    consumer, repair, sought = _fetching_consumer([{other: [5, 9]}, {p2: [40, 41]}])
    assert await _drain(consumer, 2) == [(0, 5), (0, 9), (2, 40), (2, 41)]
    assert sought == [] and repair.repairs == 0
    await consumer.on_partitions_revoked({p2})
    # after a revoke the partition's expectation is gone (the next owner's position is unknown)
    assert repair.check(p2, 500) is None
