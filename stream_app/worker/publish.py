"""Batched publishing to Kafka that returns only once the broker has acked every record.

``BatchPublisher.publish(records)`` groups a take's records (recommendations, dead letters,
changelog writes...) per topic-partition, fills aiokafka ``BatchBuilder``s (one ``send_batch``
per full batch instead of one ``send`` + future per record), sends them all, then awaits every
batch's ack. When it returns, each ``Record`` carries its partition and offset; when it
raises ``PublishError``, some record was not acked and the caller must not commit the input
offsets (at-least-once: exit and let the batch be redelivered).

Partitions: a record with ``partition=None`` goes where ``AIOKafkaProducer.send`` and faust
would put it: aiokafka's ``DefaultPartitioner`` (murmur2 of the key over the topic's sorted
partitions; random for a null key). The pure-Python murmur2 costs ~3 us, so each key's
partition is remembered per topic and partition count.

Failures, per ``publish`` call:
- a batch the broker refuses as too large (``MESSAGE_TOO_LARGE`` / ``RECORD_LIST_TOO_LARGE``)
  is resent one record per batch; a single record still too large is, for a dead letter, cut
  down (to ``max_message_bytes``, then 64 KiB, then headers only, as ``DeadLetter.truncated``
  marks it) and resent; anything else too large raises ``PublishError``. A record above the
  producer's ``max_request_bytes`` is cut before it is sent (aiokafka's ``send`` would refuse
  it outright);
- any other ``KafkaError`` (timeouts, leader changes the producer gave up on) resends the
  failed batches' records after ``backoff_s * attempt``, at most ``retries`` rounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from stream_app.worker.dlq import DeadLetter

log = logging.getLogger("streamrec.worker")
SHRINK_BYTES = 64 * 1024
RECORD_OVERHEAD = 64  # bytes of framing per record beside key, value and headers
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
KEY_CACHE_MAX = 200_000


class PublishError(RuntimeError):
    """Some record could not be published (the input offsets must not be committed)."""


@dataclass(eq=False)
class Record:
    """One record to publish. ``dead`` marks a dead letter (it may be cut down when too large).
    ``partition`` (None: by key) and ``offset`` are filled in by ``publish``."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    dead: DeadLetter | None = None
    offset: int = -1
    alone: bool = False  # resend in a batch of its own (its batch was too large)

    def size(self) -> int:
        head = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.key or b"") + len(self.value or b"") + head + RECORD_OVERHEAD


@dataclass(eq=False)
class Sent:
    """Batches handed to the producer, each with its records and its ack future."""

    batches: list[tuple[list[Record], Any]]


class BatchPublisher:
    """Publishes records through one started ``AIOKafkaProducer`` (faust's own, reached as
    ``app.producer._producer``, or a separate one)."""

    def __init__(
        self,
        producer: Any,
        *,
        max_message_bytes: int,
        max_request_bytes: int,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if retries < 1:
            msg = f"retries: expected >= 1, got {retries}"
            raise ValueError(msg)
        self.producer = producer
        self.max_message_bytes = max_message_bytes
        self.max_request_bytes = max_request_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self._partitioner = DefaultPartitioner()
        self._keys: dict[tuple[str, int], dict[bytes, int]] = {}

    async def publish(self, records: Sequence[Record]) -> None:
        """Send every record and wait for all broker acks (see the module docstring)."""
        await self.wait(await self.send(records))

    async def send(self, records: Sequence[Record]) -> Sent:
        """Hand every record to the producer (in order, per topic-partition) without waiting
        for acks: the caller may do other work, or send the next take, before ``wait``."""
        await self._assign_partitions(records)
        for rec in records:
            while rec.size() > self.max_request_bytes:
                self._shrink(rec, f"{rec.size()} bytes > the producer's max request size")
        return Sent(await self._submit(list(records)))

    async def wait(self, sent: Sent) -> None:
        """Wait until the broker has acked every record of ``sent``; resend what failed."""
        attempt = 0
        batches = sent.batches
        while batches:
            results = await asyncio.gather(*(fut for _, fut in batches), return_exceptions=True)
            again, error = self._settle(batches, results)
            if error is not None:
                attempt += 1
                log.warning(
                    "publishing %d records failed (attempt %d): %r", len(again), attempt, error
                )
                if attempt >= self.retries:
                    msg = f"{len(again)} records not acked after {attempt} attempts: {error!r}"
                    raise PublishError(msg) from error
                await asyncio.sleep(self.backoff_s * attempt)
            batches = await self._submit(again) if again else []

    async def _submit(self, records: list[Record]) -> list[tuple[list[Record], Any]]:
        return [
            (recs, await self.producer.send_batch(b, recs[0].topic, partition=recs[0].partition))
            for b, recs in self._batches(records)
        ]

    def _settle(
        self, sent: list[tuple[list[Record], Any]], results: list[Any]
    ) -> tuple[list[Record], BaseException | None]:
        """Record the offsets of acked batches; return the records to send again and the last
        retriable error (None when only too-large batches are to be resent)."""
        again: list[Record] = []
        error: BaseException | None = None
        for (batch, _), res in zip(sent, results, strict=True):
            if isinstance(res, TOO_LARGE):
                if len(batch) > 1:
                    for rec in batch:
                        rec.alone = True
                else:
                    self._shrink(batch[0], f"refused by the broker ({type(res).__name__})")
                again.extend(batch)
            elif isinstance(res, KafkaError):
                error = res
                again.extend(batch)
            elif isinstance(res, BaseException):
                raise res
            else:
                for i, rec in enumerate(batch):
                    rec.offset = res.offset + i
        return again, error

    async def _assign_partitions(self, records: Sequence[Record]) -> None:
        by_topic: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        for rec in records:
            if rec.partition is not None:
                continue
            if rec.topic not in by_topic:
                parts = sorted(await self.producer.partitions_for(rec.topic))
                cache = self._keys.setdefault((rec.topic, len(parts)), {})
                if len(cache) > KEY_CACHE_MAX:
                    cache.clear()
                by_topic[rec.topic] = (parts, cache)
            parts, cache = by_topic[rec.topic]
            if rec.key is None:
                rec.partition = self._partitioner(None, parts, parts)
                continue
            p = cache.get(rec.key)
            if p is None:
                p = cache[rec.key] = self._partitioner(rec.key, parts, parts)
            rec.partition = p

    def _batches(self, records: list[Record]) -> list[tuple[Any, list[Record]]]:
        """Closed ``BatchBuilder``s with their records: grouped per topic-partition in input
        order, a new batch where one is full (list position = offset - the batch's base)."""
        open_: dict[tuple[str, int | None], tuple[Any, list[Record]]] = {}
        out: list[tuple[Any, list[Record]]] = []
        for rec in records:
            tp = (rec.topic, rec.partition)
            cur = open_.get(tp)
            if rec.alone or cur is None or not self._append(cur[0], rec):
                cur = (self.producer.create_batch(), [rec])
                self._append(cur[0], rec)  # the first record always fits a new batch
                out.append(cur)
                open_[tp] = cur
            else:
                cur[1].append(rec)
            if rec.alone:
                open_.pop(tp)
        for builder, _ in out:
            builder.close()  # a closed batch is sent at once, without lingering
        return out

    @staticmethod
    def _append(builder: Any, rec: Record) -> bool:
        meta = builder.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers)
        return meta is not None

    def _shrink(self, rec: Record, why: str) -> None:
        """Cut a dead letter's value to the next smaller size; raise when nothing is left."""
        size = len(rec.value or b"")
        if rec.dead is None or size == 0:
            msg = f"record for {rec.topic} (key {rec.key!r}) too large: {why}"
            raise PublishError(msg)
        target = next(n for n in (self.max_message_bytes, SHRINK_BYTES, 0) if n < size)
        small = rec.dead.truncated(target)
        rec.value, rec.headers = small.value, small.headers
        log.warning(
            "%s: dead letter too large (%d bytes, %s), resending %d bytes",
            rec.dead.where,
            size,
            why,
            target,
        )


def last_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """Highest acked offset per (topic, partition), e.g. a changelog's persisted offsets."""
    out: dict[tuple[str, int], int] = {}
    for rec in records:
        if rec.partition is None or rec.offset < 0:
            continue
        tp = (rec.topic, rec.partition)
        out[tp] = max(out.get(tp, -1), rec.offset)
    return out
