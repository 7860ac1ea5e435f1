"""Wiring of one worker: settings, topics, the state table, metrics, the serving holder, the
catalogue feed, the model watcher, the live hit rate (automatic rollback), shadow scoring, and
the events agent's I/O (``publisher()`` on faust's producer, ``state_io()`` on the table).
A mode ``Service`` started first by the faust app: it loads the CURRENT model version, then the
catalogue feed fills the item store; ``ready`` is set when the catalogue has caught up with
the items topic, and the events agent waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mode import Service

from schemas.settings import Settings
from stream_app.core.interests import InterestParams
from stream_app.registry import Registry
from stream_app.worker.acks import FetchRepair, OffsetWatch, PublishedGate
from stream_app.worker.catalogue import VectorCache
from stream_app.worker.catalogue_feed import CatalogueFeed
from stream_app.worker.hitrate import OnlineQuality
from stream_app.worker.latest import LatestLists
from stream_app.worker.metrics import Metrics
from stream_app.worker.model_log import ModelLog
from stream_app.worker.model_watch import ModelWatcher
from stream_app.worker.models import ServingHolder
from stream_app.worker.publish import BatchPublisher
from stream_app.worker.shadow import ShadowScorer
from stream_app.worker.state_io import StateIO
from stream_app.worker.timeseries import SeriesCollector

log = logging.getLogger("streamrec.worker")
VECTOR_CACHE_DIR = "item-vectors"


class NoModelError(RuntimeError):
    pass


@dataclass
class Topics:
    events: Any
    recommendations: Any
    dlq: Any
    model_updates: Any


class WorkerRuntime(Service):
    def __init__(self, settings: Settings, topics: Topics, table: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings, self.topics, self.table = settings, topics, table
        self.metrics = Metrics()
        # the events topic's offsets are committed only for events the agent published
        self.acks = PublishedGate([settings.topics.events], self.metrics.acks_withheld.inc)
        # skips in faust's fetch path: repaired in the consumer, any left counted in the agent
        self.fetch_repair = FetchRepair([settings.topics.events], self.metrics.fetch_repairs.inc)
        self.offsets = OffsetWatch(self.metrics.offset_gaps.inc)
        self.registry = Registry(settings.registry_dir)
        self.cache: VectorCache | None = None
        s = settings.serving
        self.holder = ServingHolder(
            self.registry,
            InterestParams.from_settings(settings.interests),
            s,
            s.device,
            s.ort_threads,
            None,
            self.metrics,
        )
        self.model_ready = asyncio.Event()
        self.worker_id = f"{settings.app_id}@{socket.gethostname()}:{os.getpid()}"
        self.started_at = datetime.now(UTC)
        self.series = SeriesCollector(s.web_series_s)
        self.latest = LatestLists(s.web_latest_users)
        self.model_log = ModelLog()
        self.feed = CatalogueFeed(settings, self.holder, self.metrics, self.model_ready)
        self.watcher = ModelWatcher(
            settings, self.holder, self.feed.ready, self.metrics, self.worker_id, self.model_log
        )
        self.quality = OnlineQuality(s.hit_users, s.rollback_drop, s.rollback_window, self.metrics)
        self.holder.on_swap.append(self.quality.detector.swapped)
        self.shadow = ShadowScorer(self.holder, self.metrics, self.worker_id, self.watcher.send)
        self.watcher.shadow = self.shadow
        self._publisher: BatchPublisher | None = None
        self._state_io: StateIO | None = None

    @property
    def ready(self) -> asyncio.Event:
        return self.feed.ready

    def on_init_dependencies(self) -> list[Any]:
        return [self.feed, self.watcher]

    async def on_start(self) -> None:
        version = self.registry.current()
        if version is None:
            msg = f"registry {self.registry.root}: no CURRENT model version (train one first)"
            raise NoModelError(msg)
        self.cache = VectorCache(self.settings.data_dir / VECTOR_CACHE_DIR)
        self.holder.cache = self.cache
        await self.holder.load_initial(version)
        self.model_log.loaded(version)
        self.model_ready.set()

    async def on_stop(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def publisher(self) -> BatchPublisher:
        """The events agent's publisher, on faust's own started aiokafka producer (its
        connections, security settings, acks and max request size); rebuilt if faust has
        replaced that producer."""
        app = self.table.app
        producer = app.producer._producer
        if producer is None:
            msg = "faust's producer is not started: nothing can be published"
            raise RuntimeError(msg)
        if self._publisher is None or self._publisher.producer is not producer:
            self._publisher = BatchPublisher(
                producer,
                max_message_bytes=self.settings.max_message_bytes,
                max_request_bytes=app.conf.producer_max_request_size,
            )
        return self._publisher

    def committed_offset(self, partition: int) -> int | None:
        """faust's committed offset of an events partition (where it seeks on assignment)."""
        from faust.types import TP

        consumer = self.table.app.consumer
        return consumer._committed_offset.get(TP(self.settings.topics.events, partition))

    def state_io(self) -> StateIO:
        """The user-state table's reads and writes on its RocksDB partition DBs (built on
        first use: the table's store exists once faust has started it)."""
        if self._state_io is None:
            self._state_io = StateIO(self.table)
        return self._state_io

    def tables_ready(self) -> bool:
        """faust has assigned partitions and recovered the table (reads see all state)."""
        app = self.table.app
        recovered = app.tables.recovery.completed.is_set()
        return bool(recovered and not app.rebalancing and not app.in_recovery)

    def health(self) -> dict[str, Any]:
        from stream_app.worker.models import describe

        catalogue, tables = self.ready.is_set(), self.tables_ready()
        return {
            "status": "ok" if catalogue and tables else "starting",
            "catalogue_ready": catalogue,
            "tables_ready": tables,
            "partitions": self.partitions(),
            **describe(self.holder),
        }

    def partitions(self) -> dict[str, list[int]]:
        """The events partitions this worker serves (``active``) and the user-state
        partitions it keeps standby copies of (``standby``)."""
        assignor = self.table.app.assignor
        changelog = self.table.changelog_topic.get_topic_name()
        return {
            "active": sorted(
                tp.partition
                for tp in assignor.assigned_actives()
                if tp.topic == self.settings.topics.events
            ),
            "standby": sorted(
                tp.partition for tp in assignor.assigned_standbys() if tp.topic == changelog
            ),
        }
