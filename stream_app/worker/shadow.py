"""Shadow scoring, worker side: a ``shadow`` notice loads a version beside the served one
(``ServingHolder.load_shadow``: same build, warm-up and catalogue upkeep as a swap, never
served); it then scores the next N live events of this worker in the same batches, on the
same interest states, WITHOUT publishing its lists; when N events are scored the worker sends
a ``shadow-report`` notice and drops the shadow version.

Online hit rate, paired: an event is evaluated when the user's previous event was scored by
both models during the shadow run (so both produced a list for it): current hit = the event's
item was in the served list, shadow hit = in the shadow's list. Same events, same users, same
moment: the two rates differ only by the model.

Cost: the agent checks one attribute per batch while no shadow is active. While one is, each
batch is scored a second time after its recommendations are acked (the served lists never
wait for the shadow).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from schemas.recommendations import ModelUpdate
from stream_app.core.engine import Recommender
from stream_app.core.interests import PURCHASE, InterestState, lite, rebuild_state
from stream_app.worker.metrics import Metrics
from stream_app.worker.models import ServingHolder
from stream_app.worker.processing import BatchResult, Snapshot

log = logging.getLogger("streamrec.shadow")


class ShadowRun:
    """One shadow version being scored: paired online hit counts."""

    def __init__(self, version: str, target: int, rec: Recommender) -> None:
        self.version, self.target, self.rec = version, target, rec
        self.scored = self.evaluated = self.current_hits = self.shadow_hits = 0
        self.started = time.monotonic()
        # user -> (served list, shadow list, item of the event they followed)
        self.last: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {}

    @property
    def remaining(self) -> int:
        return max(0, self.target - self.scored)

    def observe(
        self, user: str, item: str, served: tuple[str, ...], shadow: tuple[str, ...]
    ) -> None:
        prev = self.last.get(user)
        self.last[user] = (served, shadow, item)
        if prev is None or prev[2] == item:
            return
        self.evaluated += 1
        self.current_hits += item in prev[0]
        self.shadow_hits += item in prev[1]

    def metrics(self) -> dict[str, float]:
        n = max(self.evaluated, 1)
        return {
            "current_hit_rate": self.current_hits / n,
            "shadow_hit_rate": self.shadow_hits / n,
            "events": float(self.scored),
            "evaluated": float(self.evaluated),
            "current_hits": float(self.current_hits),
            "shadow_hits": float(self.shadow_hits),
            "seconds": round(time.monotonic() - self.started, 3),
        }

    def state_for(self, state: InterestState) -> InterestState:
        """The serving state, moved into the shadow's vector space if its encoder differs."""
        model, store = self.rec.bundle.model, self.rec.bundle.store
        if state.space == model.space:
            return state
        vectors = {i: store.text[store.row[i]] for i in set(state.recent_items) if i in store.row}
        return rebuild_state(state, vectors, model.space, self.rec.params)


class ShadowScorer:
    def __init__(
        self,
        holder: ServingHolder,
        metrics: Metrics,
        worker_id: str,
        send: Callable[[ModelUpdate], Awaitable[None]],
    ) -> None:
        self.holder, self.metrics, self.worker_id, self.send = holder, metrics, worker_id, send
        self.run: ShadowRun | None = None
        self.loading: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, notice: ModelUpdate) -> None:
        """Handle a ``shadow`` notice: load the version, then score it on the next events."""
        version, n = notice.model_version, notice.events or 1000
        if version in (self.loading, self.run.version if self.run else None):
            return  # the same notice again
        if version == self.holder.version:
            await self._report(version, {}, f"{version} is the served version, not a shadow")
            return
        self.stop()
        self.loading = version
        try:
            rec = await self.holder.load_shadow(version)
        except Exception as exc:  # noqa: BLE001 - a shadow that cannot load is reported
            log.error("shadow model %s refused: %s", version, exc)
            await self._report(version, {}, f"refused: {exc}")
            return
        finally:
            self.loading = None
        self.run = ShadowRun(version, n, rec)
        self.metrics.shadow_active.labels(version).set(1)
        log.info(
            "shadow scoring %s on the next %d events beside %s", version, n, self.holder.version
        )

    def stop(self) -> None:
        run = self.run
        if run is not None:
            self.metrics.shadow_active.remove(run.version)
            if run.remaining:
                log.info(
                    "shadow %s stopped after %d of %d events", run.version, run.scored, run.target
                )
        self.run = None
        self.holder.drop_shadow()

    def score(self, result: BatchResult) -> None:
        """Score the batch's events with the shadow version (called by the agent after the
        batch's recommendations are published; nothing here is published but the report)."""
        run = self.run
        if run is None:
            return
        snaps: list[Snapshot] = [
            s for s in result.snapshots if not s.duplicate and s.index in result.recs
        ][: run.remaining]
        if not snaps:
            return
        store, weight = run.rec.bundle.store, run.rec.params.purchase_weight
        for s in snaps:  # popularity as the served store sees it (``Recommender.apply``)
            ev = lite(s.event)
            row = store.row.get(ev.item_id)
            if row is not None:
                store.bump(row, ev.ts, weight if ev.kind == PURCHASE else 1.0)
        now = max(s.event.ts.timestamp() for s in snaps)
        try:
            lists = run.rec.recommend([run.state_for(s.state) for s in snaps], now)
        except Exception as exc:  # a failing shadow never hurts serving
            log.exception("shadow %s: scoring failed; stopping the shadow", run.version)
            self._finish(run, f"scoring failed: {exc}")
            return
        for s, shadow in zip(snaps, lists, strict=True):
            served = tuple(r.item_id for r in result.recs[s.index])
            run.observe(s.event.user_id, s.event.item_id, served, tuple(r.item_id for r in shadow))
        run.scored += len(snaps)
        self.metrics.shadow_events.inc(len(snaps))
        if run.remaining == 0:
            self._finish(run, None)

    def _finish(self, run: ShadowRun, error: str | None) -> None:
        metrics = run.metrics()
        self.stop()
        if error is None:
            log.info(
                "shadow %s done: hit rate %.4f vs served %s %.4f over %d paired events (%d scored)",
                run.version,
                metrics["shadow_hit_rate"],
                self.holder.version,
                metrics["current_hit_rate"],
                run.evaluated,
                run.scored,
            )
        task = asyncio.ensure_future(self._report(run.version, metrics, error))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, version: str, metrics: dict[str, float], error: str | None) -> None:
        notice = ModelUpdate(
            model_version=version,
            parent_version=self.holder.version,
            published_at=datetime.now(UTC),
            action="shadow-report",
            metrics=metrics,
            worker=self.worker_id,
            reason=error,
        )
        try:
            await self.send(notice)
        except Exception:  # the job times out and says so
            self.metrics.shadow_reports.labels("unsent").inc()
            log.exception("shadow %s: report could not be sent", version)
            return
        self.metrics.shadow_reports.labels("error" if error else "ok").inc()
