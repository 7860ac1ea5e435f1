"""Pieces of the worker benchmark (no measurements here): the cached world and model, a local
broker, ``streamrec worker`` processes (CPU time and memory from /proc, counters from
/metrics), an open-loop producer, a consumer of recommendations, and the bare
consume -> produce loop used as the ceiling."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console

from schemas.settings import Settings
from stream_app.kafka.io import read_lines
from stream_app.kafka.local import free_port
from stream_app.worker.process import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
SEED = 3  # the replay benchmark's world seed: both benchmarks can share the world
console = Console(width=160)


# -- preparation (cached) -------------------------------------------------------------------
def prepare_world(workdir: Path, users: int, items: int, events: int) -> Path:
    world = workdir / "world"
    if not (world / "events.jsonl").exists():
        from stream_app.datagen.synthetic import generate_world

        console.print(f"generating the world: {items:,} items, {users:,} users, {events:,} events")
        generate_world(world, users=users, items=items, events=events, seed=SEED)
    return world


def prepare_registry(workdir: Path, world: Path) -> Path:
    from stream_app.registry import Registry

    # keyed by the engine (training.engine: STREAMREC_TRAINING__ENGINE=ranker-v1 benches the
    # old one) and its model code: a model cached from an older layout retrains
    engine = Settings().training.engine
    files = ("model_export/modeling.py", "model_export/tower/modeling.py", "schemas/onnx_spec.py")
    code = engine.encode() + b"".join((ROOT / path).read_bytes() for path in files)
    registry = workdir / f"registry-{engine}-{hashlib.sha256(code).hexdigest()[:10]}"
    if Registry(registry).current() is None:
        from model_export.pipeline import run_training

        console.print(f"training a small model into {registry} (1 epoch; cached for next runs)")
        t0 = time.perf_counter()
        run_training(
            Settings().with_overrides(**{"training.epochs": 1}),
            world / "items.jsonl",
            world / "events.jsonl",
            registry_dir=registry,
        )
        console.print(f"trained in {time.perf_counter() - t0:.0f} s")
    return registry


def start_broker(workdir: Path, partitions: int) -> tuple[str, Path]:
    from stream_app.kafka import local as kafka_local

    base = Settings()
    data = workdir / "kafka"
    port = free_port(pair=True)
    console.print(f"starting a local Kafka broker on :{port} ({data})")
    kafka_local.start(port, data, base.kafka_version, base.cache_dir, partitions=partitions)
    return f"localhost:{port}", data


# -- the worker process ----------------------------------------------------------------------
class BenchWorker(WorkerProcess):
    """A ``streamrec worker`` process with its CPU time and memory read from /proc."""

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def memory_mb(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        kb = {
            ln.split(":")[0]: int(ln.split()[1])
            for ln in status.splitlines()
            if ln.startswith(("VmRSS", "VmHWM"))
        }
        return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024

    def counter(self, name: str) -> float:
        return self.metrics().get(name, 0.0)


def bench_worker(
    settings: Settings,
    registry: Path,
    runs: Path,
    name: str,
    ort_threads: int,
    batch_size: int,
    profile: Path | None = None,
) -> BenchWorker:
    """A benchmark worker: ``settings`` with its own state dir and web port under ``runs``."""
    worker_settings = settings.with_overrides(
        registry_dir=str(registry),
        data_dir=str(runs / name),
        log_level="warn",
        **{
            "serving.web_port": free_port(),
            "serving.ort_threads": ort_threads,
            "serving.batch_size": batch_size,
        },
    )
    return BenchWorker(worker_settings, runs, name=name, cwd=ROOT, profile=profile)


# -- traffic ---------------------------------------------------------------------------------
async def tail(settings: Settings, topic: str, **kwargs: Any) -> AIOKafkaConsumer:
    """A consumer (no group) assigned every partition of ``topic``, positioned at its end."""
    from stream_app.kafka.io import topic_partitions

    consumer = AIOKafkaConsumer(
        **settings.kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **kwargs,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


class TopicTail:
    """Reads a topic from its end in the background; subclasses handle each record."""

    topic_of: str = "recommendations"  # the ``settings.topics`` field

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = await tail(self.settings, getattr(self.settings.topics, self.topic_of))
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    self.handle(m, now)

    def handle(self, m: Any, now: float) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()


class Collector(TopicTail):
    """The recommendations topic from its end: per trigger event id, the arrival time here
    and the worker's own latency_ms (of the first one), how many arrived and how many of those
    carried the redelivery header."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.got: dict[str, tuple[float, float]] = {}
        self.versions: dict[str, str] = {}  # trigger event id -> model_version
        self.counts: dict[str, int] = {}
        self.flagged: dict[str, int] = {}  # trigger event id -> recs with the header
        self.flagged_first = 0  # headers on the first list of an event (must stay 0)
        self.sizes: list[int] = []

    def handle(self, m: Any, now: float) -> None:
        from schemas.recommendations import REDELIVERY_HEADER

        doc = json.loads(m.value)
        eid = doc["trigger_event_id"]
        first = eid not in self.counts
        self.counts[eid] = self.counts.get(eid, 0) + 1
        if any(k == REDELIVERY_HEADER for k, _ in m.headers or ()):
            self.flagged[eid] = self.flagged.get(eid, 0) + 1
            self.flagged_first += first
        if first:
            self.got[eid] = (now, doc["latency_ms"])
        self.versions[eid] = doc["model_version"]
        if len(self.sizes) < 2000:
            self.sizes.append(len(m.value))

    async def wait_for(self, ids: list[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = sum(1 for i in ids if i not in self.got)
            if missing == 0:
                return 0
            await asyncio.sleep(0.2)
        return sum(1 for i in ids if i not in self.got)


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.kafka.client_kwargs(),
        linger_ms=2,
        acks=1,
        max_batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,  # bad input may be oversize on purpose
    )


@dataclass(frozen=True)
class SentAt:
    id: str
    intended: float  # epoch seconds
    partition: int
    offset: int


async def send_open_loop(
    settings: Settings,
    messages: list[tuple[bytes | None, bytes | None, str]],
    rate: float | None,
    topic: str | None = None,
) -> list[SentAt]:
    """Open loop: message i is due at t0 + i / rate (all at once without a rate); returns
    each one's intended send time and where it landed."""
    prod = producer(settings)
    await prod.start()
    t0 = time.time() + 0.05
    due: list[float] = []
    try:
        futs = []
        for i, (key, value, _) in enumerate(messages):
            at = t0 + i / rate if rate else time.time()
            ahead = at - time.time()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            due.append(at)
            futs.append(await prod.send(topic or settings.topics.events, value, key=key))
        landed = await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return [
        SentAt(m[2], at, md.partition, md.offset)
        for m, at, md in zip(messages, due, landed, strict=True)
    ]


async def send_at_rate(
    settings: Settings, events: list[tuple[bytes, bytes, str]], rate: float | None
) -> dict[str, float]:
    """``send_open_loop``: each event id's intended send time (epoch seconds)."""
    sent = await send_open_loop(settings, list(events), rate)
    return {s.id: s.intended for s in sent}


async def bare_loop(
    settings: Settings, events: list[tuple[bytes, bytes, str]], payload: int
) -> dict[str, Any]:
    """The ceiling: consume the events and produce one record of ``payload`` bytes per event
    to the recommendations topic, nothing else (no state, no model)."""
    consumer = await tail(settings, settings.topics.events)
    await send_at_rate(settings, events, None)
    prod = producer(settings)
    await prod.start()
    pad = b"x" * payload
    n, t0, futs = 0, 0.0, []
    try:
        while n < len(events):
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if not batch:
                break
            t0 = t0 or time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    futs.append(await prod.send(settings.topics.recommendations, pad, key=m.key))
                    n += 1
            if len(futs) > 5000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
        seconds = time.perf_counter() - t0
    finally:
        await prod.stop()
        await consumer.stop()
    return {"phase": "bare consume->produce", "events": n, "events_per_s": n / seconds}


def load_events(world: Path) -> list[tuple[bytes, bytes, str]]:
    out = []
    for line in read_lines(world / "events.jsonl"):
        doc = json.loads(line)
        out.append((doc["user_id"].encode(), line, doc["event_id"]))
    return out


async def produce_items(settings: Settings, world: Path) -> int:
    prod = AIOKafkaProducer(
        **settings.kafka.client_kwargs(), linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await prod.start()
    lines = read_lines(world / "items.jsonl")
    try:
        futs = [
            await prod.send(settings.topics.items, v, key=json.loads(v)["item_id"].encode())
            for v in lines
        ]
        await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return len(lines)
