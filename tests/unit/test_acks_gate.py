"""The events topic's offsets are committed only for events the agent published
(``stream_app/worker/acks.py``), on faust's REAL consumer bookkeeping (``Consumer.ack`` and
``_new_offset``, the offset faust would commit): an event faust acks without it being handled
(a rebalance skip) is not committed, while plain faust would commit past it."""

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
