"""Watches for new model versions: ``model-updates`` notices (a plain aiokafka consumer, no
group, from the end of the topic) and a poll of the registry's ``CURRENT`` every few seconds
(a notice can be missed; a registry on a shared disk can be moved by hand). The registry's
CURRENT is the truth; a notice only wakes the watcher up (and retries a refused version once).

It also owns this worker's own notices (a producer on ``model-updates``): shadow reports, and
the automatic rollback: when the live hit rate of a freshly swapped-in version falls (see
``hitrate.RollbackDetector``), ``Registry.rollback(expected_current=bad)`` moves CURRENT back
only if it still names the bad version, so of several workers that detect it, one rolls back
and the others find it done; the one that did sends a ``rollback`` notice.

Notices: publish / promote / rollback -> check CURRENT; shadow -> ``ShadowScorer.start``;
shadow-report -> ignored (for the fine-tuning job).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from mode import Service
from pydantic import ValidationError

from schemas.recommendations import ModelUpdate
from schemas.settings import Settings
from stream_app.registry import CurrentChanged
from stream_app.worker.hitrate import Verdict
from stream_app.worker.metrics import Metrics
from stream_app.worker.model_log import ModelLog
from stream_app.worker.models import ServingHolder

if TYPE_CHECKING:
    from stream_app.worker.shadow import ShadowScorer

log = logging.getLogger("streamrec.models")
POLL_S = 2.0
SEND_TIMEOUT_S = 10.0


class ModelWatcher(Service):
    def __init__(
        self,
        settings: Settings,
        holder: ServingHolder,
        ready: asyncio.Event,
        metrics: Metrics,
        worker_id: str,
        model_log: ModelLog | None = None,
        poll_s: float = POLL_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.holder, self.ready, self.poll_s = settings, holder, ready, poll_s
        self.metrics, self.worker_id = metrics, worker_id
        self.model_log = model_log or ModelLog()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.shadow: ShadowScorer | None = None
        self._lock = asyncio.Lock()
        self._spawned: set[asyncio.Task[Any]] = set()  # (mode.Service owns ``_tasks``)

    async def on_start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            self.settings.topics.model_updates,
            **self.settings.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await self.consumer.start()
        self.producer = AIOKafkaProducer(
            **self.settings.kafka.client_kwargs(), request_timeout_ms=int(SEND_TIMEOUT_S * 1000)
        )
        await self.producer.start()
        self.add_future(self._poll())
        self.add_future(self._notices())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def send(self, notice: ModelUpdate) -> None:
        """Publish one of this worker's notices on ``model-updates`` (acked)."""
        if self.producer is None:
            msg = "model watcher: not started (no producer for model-updates)"
            raise RuntimeError(msg)
        await asyncio.wait_for(
            self.producer.send_and_wait(
                self.settings.topics.model_updates, notice.model_dump_json().encode(), key=b"model"
            ),
            SEND_TIMEOUT_S,
        )

    def verdict(self, verdict: Verdict) -> None:
        """A completed hit-rate watch (from the agent): log it; roll back if it says so."""
        self.model_log.verdict(verdict)
        if not verdict.rollback:
            log.info("live quality check after swap: %s", verdict.describe())
            return
        self._spawn(self.auto_rollback(verdict))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def auto_rollback(self, verdict: Verdict) -> None:
        """Move CURRENT back from ``verdict.version`` if it is still CURRENT; notify; swap."""
        bad = verdict.version
        log.warning("AUTO-ROLLBACK of %s: %s", bad, verdict.describe())
        async with self._lock:
            try:
                old, new = await asyncio.to_thread(
                    self.holder.registry.rollback, expected_current=bad
                )
            except CurrentChanged as exc:
                self.metrics.auto_rollbacks.labels("skipped").inc()
                log.warning("AUTO-ROLLBACK of %s not needed: %s", bad, exc)
            except Exception:  # e.g. nothing to roll back to
                self.metrics.auto_rollbacks.labels("failed").inc()
                log.exception("AUTO-ROLLBACK of %s failed; it keeps serving", bad)
                return
            else:
                self.metrics.auto_rollbacks.labels("done").inc()
                log.warning("AUTO-ROLLBACK done by this worker: CURRENT %s -> %s", old, new)
                self.model_log.rollback(old, new, verdict.describe())
                notice = ModelUpdate(
                    model_version=new,
                    parent_version=old,
                    published_at=datetime.now(UTC),
                    action="rollback",
                    worker=self.worker_id,
                    reason=f"automatic: {verdict.describe()}",
                    metrics={
                        "hit_rate_before": verdict.before,
                        "hit_rate_after": verdict.after,
                        "outcomes_before": float(verdict.n_before),
                        "outcomes_after": float(verdict.n_after),
                    },
                )
                try:
                    await self.send(notice)
                except Exception:  # other workers poll CURRENT anyway
                    log.exception("rollback notice not sent; other workers will see CURRENT")
        await self.check()

    async def check(self, notice: str | None = None) -> None:
        """Swap to the registry's CURRENT if it is not what we serve."""
        async with self._lock:
            target = await asyncio.to_thread(self.holder.registry.current)
            if target is None:
                return
            serving = self.holder.version
            result = await self.holder.swap_to(target, retry_refused=notice == target)
            if result is None:
                return
            if result.ok:
                self.model_log.swapped(result.version, serving, result.seconds)
            else:
                self.model_log.refused(result.version, serving, result.reason)

    async def _poll(self) -> None:
        await self.ready.wait()
        while not self.should_stop:
            try:
                await self.check()
            except Exception:  # the watcher must survive anything
                log.exception("model watch: registry check failed")
            await self.sleep(self.poll_s)

    async def _notices(self) -> None:
        consumer = self.consumer
        if consumer is None:
            msg = "model watcher: not started (no consumer for model-updates)"
            raise RuntimeError(msg)
        while not self.should_stop:
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=50)
            except Exception:  # the registry poll still runs meanwhile
                log.exception("model-updates: fetch failed; retrying")
                await self.sleep(1.0)
                continue
            for msgs in batch.values():
                for m in msgs:
                    try:
                        notice = ModelUpdate.model_validate_json(m.value or b"")
                    except ValidationError as exc:
                        log.warning("model-updates@%d: not a ModelUpdate: %s", m.offset, exc)
                        continue
                    await self._handle(notice)

    async def _handle(self, notice: ModelUpdate) -> None:
        if notice.action == "shadow-report":
            log.debug("model-updates: shadow report from %s", notice.worker)
            return
        log.info("model-updates: %s %s", notice.action, notice.model_version)
        await self.ready.wait()
        if notice.action == "shadow":
            if self.shadow is not None:
                self._spawn(self.shadow.start(notice))
            return
        try:
            await self.check(notice.model_version)
        except Exception:
            log.exception("model watch: swap after notice failed")
