"""``--via-kafka``: replay the log through the real topics and a running worker.

The whole log is produced in time order (keyed by user) to the events topic, each catalogue
item to the items topic just before the first event at or after its ``ts`` (as a catalogue
service would publish it); the worker's recommendations are consumed from the recommendations
topic. Each recommendation is matched to the user's NEXT event through ``trigger_event_id``:
that list is what the user saw when the event happened. Events after the warm-up cut are
scored with the same metrics as offline (AUC needs the target's scores, which the topic does
not carry, so it is left out), and the run measures throughput and latency: the worker's own
``latency_ms`` (receipt -> send) and end-to-end produce -> consume.

The offline replay of the same log runs first, so the Kafka row sits beside the offline
systems. ``--start-worker`` starts a worker for the run on fresh, uniquely named topics with a
fresh state directory (so earlier runs cannot leak in); without it the configured topics and a
running worker are used, and it must serve the version being evaluated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.events import encode_event
from schemas.items import encode_item
from schemas.settings import Settings
from stream_app.core.hooks import Hooks
from stream_app.kafka.local import free_port
from stream_app.replay import results
from stream_app.replay.results import KafkaRun, ReplayResult
from stream_app.replay.runner import ReplayError, run_replay
from stream_app.worker.process import WorkerExited, WorkerProcess

SYSTEM = "streamrec-kafka"


WORKER_START_TIMEOUT_S = 180.0
IDLE_TIMEOUT_S = 30.0  # no new recommendation for this long after the last event: done


def isolated_settings(settings: Settings, top_k: int) -> Settings:
    """A worker of its own for the run: fresh, uniquely named topics and app id, a fresh state
    directory, a free web port, the replay's list length."""
    tag = uuid.uuid4().hex[:8]
    topics = {
        n: f"replay-{n}-{tag}"
        for n in ("events", "items", "recommendations", "dlq", "model_updates")
    }
    return settings.with_overrides(
        **{f"topics.{k}": v for k, v in topics.items()},
        app_id=f"streamrec-replay-{tag}",
        data_dir=tempfile.mkdtemp(prefix="streamrec-replay-"),
        log_level="warn",
        **{"serving.top_k": top_k, "serving.web_port": free_port()},
    )


@dataclass
class Received:
    user: str
    trigger: str
    model_version: str
    items: list[dict[str, Any]]
    latency_ms: float
    consumed_at: float


async def _stream(
    settings: Settings,
    timeline: list[tuple[str, bytes, bytes, str | None]],
    expected: int,
    rate: float | None,
    hooks: Hooks,
) -> tuple[dict[str, float], dict[str, Received], float]:
    """Produce the timeline, consume recommendations; (produce time per event id, received
    recommendation per trigger event id, production seconds)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from stream_app.kafka.io import ensure_topics, start_client

    await ensure_topics(settings)
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_kwargs(), group_id=None, enable_auto_commit=False
    )
    await start_client(consumer, settings)
    producer = AIOKafkaProducer(
        **settings.kafka.client_kwargs(), linger_ms=5, acks="all", max_batch_size=256 * 1024
    )
    await start_client(producer, settings)
    sent: dict[str, float] = {}
    got: dict[str, Received] = {}
    try:
        from aiokafka import TopicPartition

        topic = settings.topics.recommendations
        tps = [TopicPartition(topic, p) for p in await producer.partitions_for(topic) or ()]
        if not tps:
            msg = f"topic {topic}: no partitions found on {settings.kafka.broker}"
            raise ReplayError(msg)
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        done = asyncio.Event()

        async def consume() -> None:
            last = time.monotonic()
            while len(got) < expected:
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                now = time.time()
                for msgs in batch.values():
                    for m in msgs:
                        doc = json.loads(m.value)
                        got[doc["trigger_event_id"]] = Received(
                            doc["user_id"],
                            doc["trigger_event_id"],
                            doc["model_version"],
                            doc["items"],
                            float(doc["latency_ms"]),
                            now,
                        )
                if batch:
                    last = time.monotonic()
                    hooks.progress("recommendations", len(got), expected)
                elif done.is_set() and time.monotonic() - last > IDLE_TIMEOUT_S:
                    return

        task = asyncio.create_task(consume())
        start = time.perf_counter()
        pending = []
        n_events = 0
        for i, (topic, key, value, event_id) in enumerate(timeline):
            fut = await producer.send(topic, value, key=key)
            if event_id is not None:
                sent[event_id] = time.time()
                n_events += 1
                if rate:
                    ahead = n_events / rate - (time.perf_counter() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            pending.append(fut)
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                hooks.progress("produce", i + 1, len(timeline))
        await asyncio.gather(*pending)
        produced_s = time.perf_counter() - start
        done.set()
        await task
    finally:
        await producer.stop()
        await consumer.stop()
    return sent, got, produced_s


def _timeline(
    settings: Settings, items: list[Any], events: list[Any]
) -> tuple[list[Any], list[int]]:
    """Items (at their ts) and events in time order: (topic, key, value, event id or None)."""
    order = sorted(range(len(events)), key=lambda i: events[i].ts)
    t = settings.topics
    pending = sorted(
        (it for it in items if not it.deleted),
        key=lambda it: it.ts.timestamp() if it.ts else -math.inf,
    )
    out, j = [], 0
    for i in order:
        e = events[i]
        while j < len(pending) and (pending[j].ts is None or pending[j].ts <= e.ts):
            out.append((t.items, pending[j].item_id.encode(), encode_item(pending[j]), None))
            j += 1
        out.append((t.events, e.user_id.encode(), encode_event(e), e.event_id))
    return out, order


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {f"p{p}": round(float(np.percentile(a, p)), 2) for p in (50, 90, 95, 99)} | {
        "max": round(float(a.max()), 2),
        "mean": round(float(a.mean()), 2),
    }


def run_via_kafka(
    settings: Settings, items_path: Path, events_path: Path, hooks: Hooks | None = None
) -> ReplayResult:
    """The offline replay (``settings.replay``, protocol stream) plus the running worker
    through Kafka as one more system (``streamrec-kafka``), with delivery and latency."""
    from stream_app.datagen.jsonl import load_events, load_items
    from stream_app.registry import Registry

    hooks = hooks or Hooks()
    opts = settings.replay
    if opts.protocol != "stream":
        msg = "--via-kafka: expected --protocol stream (LOO ranks the whole catalogue offline)"
        raise ReplayError(msg)
    current = Registry(settings.registry_dir).current()
    if current is None:
        msg = f"registry {settings.registry_dir}: no CURRENT version for the worker to serve"
        raise ReplayError(msg)
    if opts.version is not None and opts.version != current:
        msg = (
            f"--via-kafka evaluates what the worker serves: CURRENT is {current}, got --model "
            f"{opts.version}; promote it first (`streamrec model promote {opts.version}`)"
        )
        raise ReplayError(msg)
    settings = settings.with_overrides(**{"replay.version": current})
    result = run_replay(settings, items_path, events_path, hooks)
    context = result.context
    if context is None or context.cut is None:
        msg = "--via-kafka: the offline replay left no stream context"
        raise ReplayError(msg)
    n_list = max(opts.ks)
    run_settings = isolated_settings(settings, n_list) if opts.start_worker else settings
    items, events = load_items(items_path), load_events(events_path)
    timeline, order = _timeline(run_settings, items, events)
    hooks.stage(
        f"producing {len(events)} events (+{len(timeline) - len(events)} items) to "
        f"{run_settings.topics.events} at {opts.rate or 'max'} ev/s"
    )
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if opts.start_worker:
            worker = WorkerProcess(run_settings, run_settings.data_dir)
            hooks.stage(f"starting a worker on {run_settings.kafka.broker} (log {worker.log_dir})")
            stack.enter_context(worker.start())
            try:
                worker.wait_healthy(WORKER_START_TIMEOUT_S)
            except WorkerExited as exc:
                raise ReplayError(str(exc)) from None
        sent, got, produced_s = asyncio.run(
            _stream(run_settings, timeline, len(events), opts.rate, hooks)
        )
    wall = time.perf_counter() - t0
    if opts.start_worker:  # the run's own state dir (kept, with the worker log, on failure)
        shutil.rmtree(run_settings.data_dir, ignore_errors=True)
    res, kafka = match_recommendations(
        context.cat, context.cut, context.chosen, events, order, sent, got, current, n_list
    )
    kafka = kafka.model_copy(
        update={
            "produce_s": round(produced_s, 2),
            "wall_s": round(wall, 2),
            "rate": opts.rate,
            "topics": run_settings.topics.model_dump(),
            "started_worker": opts.start_worker,
        }
    )
    ctx = context.metrics
    return result.model_copy(
        update={
            "systems": {**result.systems, SYSTEM: results.system_metrics(res, ctx, by_type=True)},
            "curves": {**result.curves, SYSTEM: results.curves(res, n_list)},
            "descriptions": {
                **result.descriptions,
                SYSTEM: "the running worker through Kafka: lists consumed from "
                "the recommendations topic, matched to the next event",
            },
            "kafka": kafka,
        }
    )


def match_recommendations(
    cat: Any,
    cut: int,
    chosen: set[str] | None,
    events: list[Any],
    order: list[int],
    sent: dict[str, float],
    got: dict[str, Received],
    version: str,
    n_list: int,
) -> tuple[results.SystemResults, KafkaRun]:
    """Score each event after the cut (``order`` = time order) against the list of the
    recommendation triggered by its user's previous event that got one (a dead-lettered event
    leaves the list before it current); plus delivery, throughput and latency figures."""
    res = results.SystemResults(SYSTEM, n_list)
    prev: dict[str, str] = {}
    history: dict[str, int] = {}
    missing = wrong_version = 0
    for pos, i in enumerate(order):
        e = events[i]
        before = prev.get(e.user_id)
        item = cat.index.get(e.item_id, -1)
        scored = pos >= cut and history.get(e.user_id, 0) > 0 and item >= 0
        if scored and (chosen is None or e.user_id in chosen):
            rec = got.get(before) if before is not None else None
            if rec is None:
                missing += 1
            else:
                wrong_version += rec.model_version != version
                ids = np.array([cat.index.get(r["item_id"], -1) for r in rec.items], np.int64)
                hit = np.flatnonzero(ids == item)
                res.add(
                    rank=int(hit[0]) if hit.size else -1,
                    purchase=e.event_type == "purchase",
                    auc_click=math.nan,
                    target_buy=math.nan,
                    items=ids[ids >= 0],
                    history=history.get(e.user_id, 0),
                    user=e.user_id,
                    ts=e.ts.timestamp(),
                )
        if e.event_id in got:  # a dead-lettered event leaves the previous list current
            prev[e.user_id] = e.event_id
        history[e.user_id] = history.get(e.user_id, 0) + 1
    latency = [r.latency_ms for r in got.values()]
    e2e = [(r.consumed_at - sent[t]) * 1000.0 for t, r in got.items() if t in sent]
    first = min(sent.values(), default=0.0)
    last = max((r.consumed_at for r in got.values()), default=first)
    kafka = KafkaRun(
        events_produced=len(sent),
        recommendations=len(got),
        events_without_recommendation=len(sent) - sum(1 for t in got if t in sent),
        scored_without_list=missing,
        other_model_version=wrong_version,
        throughput_events_per_s=round(len(got) / max(last - first, 1e-9), 1),
        worker_latency_ms=_percentiles(latency),
        end_to_end_ms=_percentiles(e2e),
        latency_samples={"worker latency_ms": latency, "end-to-end": e2e},
    )
    return res, kafka
