"""The ``items`` topic (compacted, key = item_id) -> every worker's catalogue.

A plain aiokafka consumer WITHOUT a consumer group, assigned all partitions of the items topic
and read from the beginning at every start (the topic is compacted: it is the catalogue).
Messages are applied in batches: the last message per item id wins; ``deleted: true`` or a
null value (tombstone) removes the item; new or changed texts are encoded off the event loop
(see ``catalogue.VectorResolver``). ``ready`` is set once the feed has applied everything that
was in the topic when it started; the events agent waits for it.

``wait_caught_up`` is the barrier the agent uses before dead-lettering an ``unknown_item``:
it waits (bounded) until everything produced to the items topic so far has been applied, so an
item produced just before the events that use it is not lost to a race. The end offsets come
from a second, idle consumer: on the feed's own connection the request queued behind the
fetch long poll (the broker answers one request per connection at a time), so every batch
with an unknown item waited up to 500 ms even with the catalogue caught up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from mode import Service

from schemas.errors import BadInput
from schemas.items import decode_item
from schemas.settings import Settings
from stream_app.worker.catalogue import ItemRecord
from stream_app.worker.dlq import Where
from stream_app.worker.metrics import Metrics
from stream_app.worker.models import ServingHolder

log = logging.getLogger("streamrec.catalogue")
FETCH_RECORDS = 2000


class CatalogueFeed(Service):
    def __init__(
        self,
        settings: Settings,
        holder: ServingHolder,
        metrics: Metrics,
        model_ready: asyncio.Event,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.holder, self.metrics = settings, holder, metrics
        self.model_ready = model_ready
        self.ready = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.offsets: AIOKafkaConsumer | None = None  # end offsets only: never fetches
        self.partitions: list[TopicPartition] = []
        self.applied: dict[TopicPartition, int] = {}  # next offset to apply, per partition
        self._progress = asyncio.Condition()
        self.last_caught_up = 0.0

    async def on_start(self) -> None:
        topic = self.settings.topics.items
        self.consumer = AIOKafkaConsumer(
            **self.settings.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await self.consumer.start()
        self.offsets = AIOKafkaConsumer(
            **self.settings.kafka.client_kwargs(), group_id=None, enable_auto_commit=False
        )
        await self.offsets.start()
        parts = await self._partitions_for(topic)
        self.partitions = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        self.applied = {tp: 0 for tp in self.partitions}
        self.add_future(self._run())

    async def _partitions_for(self, topic: str, timeout: float = 30.0) -> set[int]:
        admin = AIOKafkaAdminClient(**self.settings.kafka.client_kwargs())
        await admin.start()
        try:
            deadline = time.monotonic() + timeout
            while True:
                (desc,) = await admin.describe_topics([topic])
                parts = {p["partition"] for p in desc.get("partitions", [])}
                if parts:
                    return parts
                if time.monotonic() > deadline:
                    msg = f"topics.items: topic {topic!r} has no partitions (does it exist?)"
                    raise RuntimeError(msg)
                await asyncio.sleep(0.5)
        finally:
            await admin.close()

    async def on_stop(self) -> None:
        for client in (self.consumer, self.offsets):
            if client is not None:
                await client.stop()

    async def _run(self) -> None:
        consumer = self.consumer
        if consumer is None:
            msg = "catalogue feed: not started (no consumer for the items topic)"
            raise RuntimeError(msg)
        await self.model_ready.wait()
        targets = await consumer.end_offsets(self.partitions)
        t0 = time.perf_counter()
        while not self.should_stop:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
                positions = {tp: await consumer.position(tp) for tp in self.partitions}
                if batch:
                    await self._apply(batch)
            except Exception:  # the feed must outlive a broker hiccup
                log.exception("catalogue feed: fetch failed; retrying")
                await self.sleep(1.0)
                continue
            async with self._progress:
                for tp, pos in positions.items():
                    self.applied[tp] = max(self.applied.get(tp, 0), pos)
                self._progress.notify_all()
            if not self.ready.is_set() and all(
                self.applied[tp] >= targets[tp] for tp in self.partitions
            ):
                self.ready.set()
                self.last_caught_up = time.monotonic()
                log.info(
                    "catalogue loaded: %d items from %s in %.1fs",
                    len(self.holder.catalogue),
                    self.settings.topics.items,
                    time.perf_counter() - t0,
                )

    async def _apply(self, batch: dict[TopicPartition, list[Any]]) -> int:
        latest: dict[str, ItemRecord | None] = {}
        now = time.time()
        for tp, msgs in batch.items():
            for m in msgs:
                where = Where(tp.topic, tp.partition, m.offset)
                key = m.key.decode("utf-8", "replace") if m.key is not None else None
                if m.value is None:
                    if key:
                        latest[key] = None
                    continue
                try:
                    item = decode_item(m.value, self.settings.max_message_bytes)
                except BadInput as exc:
                    self.metrics.catalogue_bad.inc()
                    log.warning("%s item %s: bad item message: %s", where, key, exc)
                    continue
                latest[item.item_id] = None if item.deleted else ItemRecord.from_item(item, now)
        records = [r for r in latest.values() if r is not None]
        deletes = [i for i, r in latest.items() if r is None]
        encoded = await self._apply_records(records, deletes) if latest else 0
        self.metrics.catalogue_updates.inc(len(latest))
        self.metrics.catalogue_encoded.inc(encoded)
        if encoded:
            log.info(
                "catalogue: %d items applied, %d texts encoded, %d deleted",
                len(records),
                encoded,
                len(deletes),
            )
        return len(latest)

    async def _apply_records(self, records: list[ItemRecord], deletes: list[str]) -> int:
        try:
            return await self.holder.apply_items(records, deletes)
        except Exception:  # one bad item must not stop the feed
            log.exception("catalogue batch of %d items failed; applying one by one", len(records))
        encoded = 0
        for rec in records:
            try:
                encoded += await self.holder.apply_items([rec], [])
            except Exception as exc:  # noqa: BLE001
                self.metrics.catalogue_bad.inc()
                log.error("item %s could not be applied: %r", rec.item_id, exc)
        await self.holder.apply_items([], deletes)
        return encoded

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until every message produced to the items topic before this call has been
        applied (bounded by ``timeout``). True when caught up."""
        if self.offsets is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                targets = await self.offsets.end_offsets(self.partitions)
                async with self._progress:
                    while not all(
                        self.applied.get(tp, 0) >= off or off == 0 for tp, off in targets.items()
                    ):
                        await self._progress.wait()
        except TimeoutError:
            return False
        self.last_caught_up = time.monotonic()
        return True
