"""Watches for new model versions: ``model-updates`` notices (a plain aiokafka consumer, no
group, from the end of the topic) and a poll of the registry's ``CURRENT`` every few seconds
(a notice can be missed; a registry on a shared disk can be moved by hand). The registry's
CURRENT is the truth; a notice only wakes the watcher up (and retries a refused version once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from mode import Service
from pydantic import ValidationError

from schemas.recommendations import ModelUpdate
from schemas.settings import Settings
from stream_app.worker.models import ServingHolder

log = logging.getLogger("streamrec.models")
POLL_S = 2.0


class ModelWatcher(Service):
    def __init__(
        self,
        settings: Settings,
        holder: ServingHolder,
        ready: asyncio.Event,
        poll_s: float = POLL_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.holder, self.ready, self.poll_s = settings, holder, ready, poll_s
        self.consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def on_start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            self.settings.topics.model_updates,
            **self.settings.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await self.consumer.start()
        self.add_future(self._poll())
        self.add_future(self._notices())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def check(self, notice: str | None = None) -> None:
        """Swap to the registry's CURRENT if it is not what we serve."""
        async with self._lock:
            target = await asyncio.to_thread(self.holder.registry.current)
            if target is None:
                return
            await self.holder.swap_to(target, retry_refused=notice == target)

    async def _poll(self) -> None:
        await self.ready.wait()
        while not self.should_stop:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("model watch: registry check failed")
            await self.sleep(self.poll_s)

    async def _notices(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            try:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=50)
            except Exception:  # noqa: BLE001 - the registry poll still runs meanwhile
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
                    log.info("model-updates: %s %s", notice.action, notice.model_version)
                    await self.ready.wait()
                    try:
                        await self.check(notice.model_version)
                    except Exception:  # noqa: BLE001
                        log.exception("model watch: swap after notice failed")
