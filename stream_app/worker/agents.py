"""The events agent (thin): take a batch -> decode -> core (``processing``) -> publish -> state.

Batching: ``stream.take_events(batch_size, within=batch_ms)``. faust acks the batch's events,
and so may commit their offsets, only after this body returns; by then every record the batch
produced has been acked by the broker: at-least-once.

I/O, per batch: every record goes through ``BatchPublisher`` (``runtime.publisher()``, on
faust's own started aiokafka producer: one ``send_batch`` per topic-partition, every ack
awaited, resends, too-large dead letters cut down); the user states are read and written by
``StateIO`` straight on the table's RocksDB partition DBs, the store faust's ``table.get`` (and
so ``/state``) reads. In this order:

1. the recommendations, then the dead letters: published, every one acked;
2. only then the users' new states: RocksDB (one WriteBatch per partition) and their changelog
   records (the table's changelog topic, the partition of the user's events), acked; then the
   changelog's persisted offsets (``StateIO.persisted``), as faust does after its own acks;
3. the batch's messages are marked published (``rt.acks``): faust's consumer acks, and so
   commits, an events-topic offset only once it is marked (``stream_app/worker/acks.py``: faust
   also acks events it skipped in a rebalance, and a cancelled batch);
4. the body returns and faust commits.

A failure in 1 or 2 (``PublishError``: some record not acked after the retries, or anything
else) exits without committing (``_die``): the batch is redelivered.

Redeliveries: the states are written (table + changelog) only after the batch's sends are
acked, so a state that holds an event id means that event's recommendation was published.
An event found in its user's state again (after a crash, a rebalance, a producer retry) is
published once more with ``REDELIVERY_HEADER``: never a false mark. A crash between the acks
and the state writes redelivers events the state does not hold: published again, unmarked.
Consumers that want one list per event keep the first per ``trigger_event_id``.

Partitions: the events topic is keyed by user_id, so a user lives on one partition; their
state is read from and written to that partition's table DB and changelog partition, as
faust's ``table[key]`` does in the context of the user's event (inside ``take_events`` that
context is not the event being handled, faust-streaming #497: ``StateIO`` takes the
partition explicitly).

Unknown items: before dead-lettering ``unknown_item``, the batch waits (at most
``UNKNOWN_ITEM_WAIT_S``) until the catalogue feed has applied everything produced to the items
topic so far: an item published just before the events that use it is not lost to a race,
while an item that really does not exist costs one bounded wait per batch. Nothing is parked
across batches (that would break per-user order and ack-after-publish).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from schemas.recommendations import REDELIVERY_HEADER
from stream_app.core.interests import state_to_bytes
from stream_app.worker import processing as proc
from stream_app.worker.dlq import DeadLetter, Where, dead_letter
from stream_app.worker.publish import BatchPublisher, Record

if TYPE_CHECKING:
    from stream_app.worker.runtime import WorkerRuntime

log = logging.getLogger("streamrec.worker")
UNKNOWN_ITEM_WAIT_S = 2.0
EXIT_CANNOT_PUBLISH = 75
REDELIVERED = [(REDELIVERY_HEADER, b"true")]


def register(app: Any, rt: WorkerRuntime) -> Any:
    serving = rt.settings.serving

    @app.on_partitions_assigned.connect
    async def _assigned(_app: Any, *_: Any, **__: Any) -> None:  # new assignment: new expectations
        rt.offsets.reset()

    @app.agent(rt.topics.events, name="streamrec.events", concurrency=1)
    async def process_events(stream: Any) -> None:
        async for events in stream.take_events(serving.batch_size, within=serving.batch_ms / 1000):
            await rt.ready.wait()
            await handle_batch(rt, list(events))
        if not app.should_stop:
            # faust ends a take() stream silently when its consumer side raises, e.g. a key it
            # cannot deserialize (robinhood/faust #586): a worker that looks healthy but
            # processes nothing must not live on. Raw serializers keep that from happening.
            _die("the events stream stopped while the app is running")

    return process_events


def _incoming(events: list[Any]) -> list[proc.Incoming]:
    now = time.monotonic()
    out = []
    for e in events:
        m = e.message
        out.append(
            proc.Incoming(
                m.key,
                m.value,
                Where(m.topic, m.partition, m.offset),
                m.time_in if m.time_in is not None else now,
            )
        )
    return out


async def handle_batch(rt: WorkerRuntime, events: list[Any]) -> None:
    batch = _incoming(events)
    rt.offsets.observe(((m.where.partition, m.where.offset) for m in batch), rt.committed_offset)
    rt.metrics.events_in.inc(len(batch))
    rt.metrics.batch_size.observe(len(batch))
    writes: list[tuple[bytes, bytes, int]] = []
    try:
        result, writes = await _compute(rt, batch)
    except Exception as exc:  # never lose a batch: dead-letter it instead
        log.exception("batch of %d events failed in processing; dead-lettering it", len(batch))
        result = proc.BatchResult(
            dead={
                i: dead_letter(exc, m.key, m.value, m.where, "internal")
                for i, m in enumerate(batch)
            }
        )
    try:
        publisher = rt.publisher()
        await _publish(rt, publisher, batch, result)
        await _write_states(rt, publisher, writes)
    except Exception as exc:  # unpublished events must not be committed
        log.exception("publishing a batch of %d events failed", len(batch))
        _die(f"publishing failed: {exc!r}")
    rt.acks.mark(e.message for e in events)  # now faust may commit them (worker/acks.py)
    _after_publish(rt, result)


async def _write_states(
    rt: WorkerRuntime, publisher: BatchPublisher, writes: list[tuple[bytes, bytes, int]]
) -> None:
    """The users' new states (key, value, partition): RocksDB, then their changelog records,
    acked, then the persisted offsets; after the batch's sends are acked (module docstring)."""
    if not writes:
        return
    state = rt.state_io()
    records = state.write(writes)
    await publisher.publish(records)
    state.persisted(records)


def _after_publish(rt: WorkerRuntime, result: proc.BatchResult) -> None:
    """Off the latency path (the batch's recommendations are acked): live hit rate (and the
    automatic-rollback verdict it may complete), then shadow scoring while one is active."""
    try:
        verdict = rt.quality.observe(result)
        rt.series.record_outcomes(time.time(), rt.quality.last_outcomes)
        if verdict is not None:
            rt.watcher.verdict(verdict)
        if rt.shadow.run is not None:
            rt.shadow.score(result)
    except Exception:  # monitoring never stops the stream
        log.exception("live hit rate / shadow scoring failed for a batch")


async def _compute(
    rt: WorkerRuntime, batch: list[proc.Incoming]
) -> tuple[proc.BatchResult, list[tuple[bytes, bytes, int]]]:
    """The batch's outcomes and its users' new states as (key, value, partition), serialised
    (written after publish). A user's state lives in the table partition of their events."""
    events, dead = proc.decode_all(batch, rt.settings.max_message_bytes)
    rec, _ = rt.holder.serving()
    if events and proc.unknown_items(events, rec):
        await rt.feed.wait_caught_up(UNKNOWN_ITEM_WAIT_S)
        rec, _ = rt.holder.serving()  # a swap may have happened while we waited
    state = rt.state_io()

    def load(user_id: str, index: int) -> bytes | None:
        return state.read(user_id.encode(), batch[index].where.partition)

    t0 = time.perf_counter()
    result = proc.process(batch, events, rec, load, dead)
    rt.metrics.score_seconds.observe(time.perf_counter() - t0)
    rt.metrics.duplicates.inc(result.duplicates)
    writes = [
        (user.encode(), state_to_bytes(s), batch[index].where.partition)
        for user, (s, index) in result.final.items()
    ]
    return result, writes


async def _publish(
    rt: WorkerRuntime,
    publisher: BatchPublisher,
    batch: list[proc.Incoming],
    result: proc.BatchResult,
) -> None:
    """One record per message, published in one go, the recommendations handed to the producer
    before the dead letters (up to ``max_message_bytes`` each); returns once the broker has
    acked every one. A recommendation for an event already in the user's
    state carries ``REDELIVERY_HEADER``. Latency = receipt -> this batch's send."""
    version, topic = result.model_version, rt.settings.topics.recommendations
    snaps = {s.index: s for s in result.snapshots}
    now, created = time.monotonic(), proc.utc_iso()  # once per batch
    debug = log.isEnabledFor(logging.DEBUG)
    records: list[Record] = []
    users: list[str] = []
    latencies: list[float] = []
    dead_letters: list[DeadLetter] = []
    for i, msg in enumerate(batch):
        dead = result.dead.get(i)
        recs = result.recs.get(i) if dead is None else None
        if recs is not None:
            snap = snaps[i]
            ev = snap.event
            latency = now - msg.received
            try:
                value = proc.recommendation_json(
                    ev.user_id, ev.event_id, version, recs, latency * 1000.0, created
                )
            except ValueError as exc:
                dead = dead_letter(exc, msg.key, msg.value, msg.where, "scoring", ev.event_id)
            else:
                headers = REDELIVERED if snap.duplicate else []
                records.append(Record(topic, ev.user_id.encode(), value, headers))
                users.append(ev.user_id)
                latencies.append(latency)
                if debug:
                    log.debug("%s event %s -> %s", msg.where, ev.event_id, topic)
                continue
        if dead is None:  # every message must end somewhere
            dead = dead_letter(
                RuntimeError("no outcome for this event"), msg.key, msg.value, msg.where, "internal"
            )
        dead_letters.append(dead)
    n_recs = len(records)
    dlq = rt.settings.topics.dlq
    for dead in dead_letters:
        rt.metrics.dlq.labels(dead.reason).inc()
        log.warning(
            "%s event %s -> %s (reason %s)", dead.where, dead.event_id or "-", dlq, dead.reason
        )
        records.append(Record(dlq, dead.key, dead.value, dead.headers, dead=dead))
    await publisher.publish(records)
    rt.metrics.recs_out.inc(n_recs)
    for latency in latencies:
        rt.metrics.latency.observe(latency)
    for user, rec in zip(users, records[:n_recs], strict=True):
        rt.latest.put(user, rec.value or b"")
    rt.series.record(time.time(), len(batch), latencies, len(dead_letters))


def _die(reason: str) -> None:
    """Exit WITHOUT committing offsets: the batch is redelivered on restart (at-least-once).
    A normal shutdown would ack and commit the batch we failed to publish."""
    log.critical("%s: exiting without committing (events will be redelivered)", reason)
    logging.shutdown()
    os._exit(EXIT_CANNOT_PUBLISH)
