"""``streamrec demo``: the whole product on one machine, end to end.

1. a broker: the one configured if it answers, else a local one (`streamrec kafka start`);
2. data: a synthetic shop (users with several drifting interests) unless files are given;
3. a model: trained into the registry if it has no CURRENT version (minutes, with progress);
4. a worker (``WorkerProcess``: `streamrec worker` with the demo's settings) fed the
   catalogue through the ``items`` topic;
5. events streamed at a steady rate (a few deliberately bad ones go to the DLQ), live
   recommendations for a few users shown as they click;
6. a summary: events/s, latency percentiles, DLQ count, model version.
Everything it started is stopped at the end (Ctrl-C or ``duration``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from schemas.settings import Settings
from stream_app.kafka import io as kafka_io
from stream_app.kafka import local as kafka_local
from stream_app.worker.process import WorkerProcess

WORKER_START_TIMEOUT_S = 180.0
DEMO_DIM = 48  # representation size of a model the demo trains (small: minutes on 2 cores)
BAD_LINES = [
    b'{"event_id": "bad-1", "event_type": "click", "user_id": "u1"',  # malformed
    b'{"event_id": "bad-2", "event_type": "view", "user_id": "u1", "item_id": "x",'
    b' "ts": 1}',  # schema: unknown event type
    b'{"event_id": "bad-3", "event_type": "click", "user_id": "u1", '
    b'"item_id": "no-such-item", "ts": "2026-03-01T00:00:00Z"}',
]


@dataclass
class Stats:
    sent: int = 0
    recs: int = 0
    dlq: int = 0
    bad_sent: int = 0
    latency_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)


class Demo:
    def __init__(
        self,
        settings: Settings,
        console: Console,
        items_path: Path | None = None,
        events_path: Path | None = None,
    ) -> None:
        self.settings, self.opts, self.console = settings, settings.demo, console
        self.items_path, self.events_path = items_path, events_path
        self.stopper: list[Any] = []
        self.stats = Stats()
        self.titles: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.sent_at: dict[str, float] = {}
        self.history: dict[str, list[str]] = {}
        self.latest: dict[str, dict[str, Any]] = {}

    # -- setup ---------------------------------------------------------------------------
    def broker(self) -> None:
        host, _, port = self.settings.kafka.broker.split(",")[0].rpartition(":")
        if kafka_local.port_open(int(port), host or "localhost"):
            self.console.print(f"· using the Kafka broker at {self.settings.kafka.broker}")
            return
        data = self.opts.workdir / f"kafka-{port}"
        with self.console.status(f"· starting a local Kafka on port {port} ..."):
            kafka_local.start(
                int(port),
                data,
                self.settings.kafka_version,
                self.settings.cache_dir,
                self.settings.topics.partitions,
            )
        self.stopper.append(lambda: kafka_local.stop(data))
        self.console.print(f"· local Kafka started on port {port} ({data})")

    def data(self) -> tuple[Path, Path]:
        if self.items_path and self.events_path:
            return self.items_path, self.events_path
        world = self.opts.workdir / "world"
        if not (world / "events.jsonl").exists():
            from stream_app.datagen.synthetic import generate_world

            o = self.opts
            summary = generate_world(world, o.users, o.items, o.events, o.seed)
            self.console.print(
                f"· generated a synthetic shop: {summary['users']} users, "
                f"{summary['items']} items, {summary['events']} events"
            )
        return world / "items.jsonl", world / "events.jsonl"

    def model(self, items: Path, events: Path) -> str:
        from stream_app.registry import Registry

        reg = Registry(self.settings.registry_dir)
        current = reg.current()
        if current is not None:
            self.console.print(f"· serving model {current} from {reg.root}")
            return current
        from model_export.pipeline import run_training
        from stream_app.cli.common import metrics_table
        from stream_app.cli.progress import TrainProgress

        self.console.print("· no model yet: training one (a few minutes on 2 cores)")
        settings = self.settings.with_overrides(
            **{
                "training.d": DEMO_DIM,
                "training.hidden": DEMO_DIM,
                "training.epochs": self.opts.epochs,
            }
        )
        with TrainProgress(self.console) as progress:
            report = run_training(settings, items, events, progress.hooks, reg.root)
        self.console.print(metrics_table("held-out test (time split)", report.systems))
        return reg.require_current()

    def worker(self) -> None:
        worker_settings = self.settings.with_overrides(
            data_dir=str(self.opts.workdir / "worker"), log_level="warn"
        )
        worker = WorkerProcess(worker_settings, self.opts.workdir, name="worker").start()
        self.stopper.append(worker.stop)
        with self.console.status("· starting the worker (loads the model, reads the catalogue)"):
            health = worker.wait_healthy(WORKER_START_TIMEOUT_S)
        self.console.print(f"· worker up (pid {worker.pid}, log {worker.log_path}): {health}")

    # -- streaming -----------------------------------------------------------------------
    async def stream(self, items: Path, events: Path) -> None:
        from schemas.items import validate_item
        from stream_app.datagen.jsonl import iter_jsonl

        for _, obj in iter_jsonl(items):
            it = validate_item(obj)
            self.titles[it.item_id] = (it.title or it.item_id, tuple(it.categories))
        lines = kafka_io.read_lines(events)
        tail = lines[int(len(lines) * 0.8) :]  # events the model was not trained on
        counts: dict[str, int] = {}
        for line in tail:
            user = json.loads(line)["user_id"]
            counts[user] = counts.get(user, 0) + 1
        shown = sorted(counts, key=lambda u: -counts[u])[: self.opts.shown]
        self.history = {u: [] for u in shown}
        tasks = [asyncio.create_task(self._consume_recs()), asyncio.create_task(self._count_dlq())]
        await asyncio.sleep(3)  # consumers joined at the end of the topics
        with Live(self._view(shown), console=self.console, refresh_per_second=2) as live:
            produce = asyncio.create_task(self._produce(tail, shown))
            end = time.monotonic() + self.opts.duration
            while time.monotonic() < end and not produce.done():
                live.update(self._view(shown))
                await asyncio.sleep(0.5)
            produce.cancel()
            await asyncio.sleep(3)  # let the last recommendations arrive
            live.update(self._view(shown))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, produce, return_exceptions=True)

    async def _produce(self, lines: list[bytes], shown: list[str]) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**self.settings.kafka.client_kwargs(), linger_ms=2)
        await kafka_io.start_client(producer, self.settings)
        try:
            start = time.perf_counter()
            # spread over the events this run will really send (duration x rate), not the
            # whole log: a short demo still sends every bad line
            planned = max(
                len(BAD_LINES) + 1, min(len(lines), int(self.opts.duration * self.opts.rate))
            )
            step = planned // (len(BAD_LINES) + 1)
            bad_at = {step * k: b for k, b in enumerate(BAD_LINES, start=1)}
            n = 0
            for i, line in enumerate(lines):
                if i in bad_at:
                    await producer.send(self.settings.topics.events, bad_at[i], key=b"u1")
                    self.stats.bad_sent += 1
                obj = json.loads(line)
                self.sent_at[obj["event_id"]] = time.perf_counter()
                if obj["user_id"] in self.history:
                    self.history[obj["user_id"]].append(obj["item_id"])
                await producer.send(self.settings.topics.events, line, key=obj["user_id"].encode())
                n += 1
                self.stats.sent = n
                ahead = n / self.opts.rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()

    async def _consume_recs(self) -> None:
        async for rec in kafka_io.consume_records(
            self.settings, self.settings.topics.recommendations, idle_timeout=None
        ):
            now = time.perf_counter()
            value = json.loads(rec.value or b"{}")
            self.stats.recs += 1
            self.stats.latency_ms.append(float(value.get("latency_ms", 0.0)))
            self.stats.versions.add(value.get("model_version", "?"))
            sent = self.sent_at.pop(value.get("trigger_event_id", ""), None)
            if sent is not None:
                self.stats.e2e_ms.append((now - sent) * 1000)
            if value.get("user_id") in self.history:
                self.latest[value["user_id"]] = value

    async def _count_dlq(self) -> None:
        async for _ in kafka_io.consume_records(
            self.settings, self.settings.topics.dlq, idle_timeout=None
        ):
            self.stats.dlq += 1

    def _title(self, item: str) -> str:
        title, cats = self.titles.get(item, (item, ()))
        return f"{title} [dim]({cats[0]})[/dim]" if cats else title

    def _view(self, shown: list[str]) -> Group:
        s = self.stats
        lat = np.percentile(s.e2e_ms, [50, 99]) if s.e2e_ms else [0, 0]
        head = (
            f"events sent {s.sent}  recommendations {s.recs}  DLQ {s.dlq}  "
            f"e2e p50 {lat[0]:.1f} ms p99 {lat[1]:.1f} ms  model {','.join(sorted(s.versions))}"
        )
        tables = []
        for user in shown:
            t = Table(title=f"user {user}", show_lines=False, expand=True)
            t.add_column("just clicked", ratio=1)
            t.add_column("recommended now (interest slot · because)", ratio=2)
            clicked = [self._title(i) for i in self.history.get(user, [])[-4:]][::-1]
            rec = self.latest.get(user, {})
            recs = [
                f"{self._title(r['item_id'])} · #{r['interest']}"
                + (f" · {self.titles.get(r['because'][0], ('?',))[0]}" if r["because"] else "")
                for r in rec.get("items", [])[:5]
            ]
            for row in range(max(len(clicked), len(recs), 1)):
                t.add_row(
                    clicked[row] if row < len(clicked) else "", recs[row] if row < len(recs) else ""
                )
            tables.append(t)
        return Group(head, *tables)

    def summary(self) -> Table:
        s = self.stats
        secs = max(time.monotonic() - s.started, 1e-9)
        t = Table(title="demo summary")
        t.add_column("metric")
        t.add_column("value", justify="right")
        p = lambda xs, q: f"{np.percentile(xs, q):.1f}" if xs else "-"  # noqa: E731
        for name, value in [
            ("events sent", f"{s.sent}"),
            ("recommendations received", f"{s.recs}"),
            ("events/s (streaming)", f"{s.recs / secs:.1f}"),
            ("worker latency p50 / p99 ms", f"{p(s.latency_ms, 50)} / {p(s.latency_ms, 99)}"),
            ("event -> recommendation p50 / p99 ms", f"{p(s.e2e_ms, 50)} / {p(s.e2e_ms, 99)}"),
            ("dead letters", f"{s.dlq} (of {s.bad_sent} bad events sent)"),
            ("model version", ", ".join(sorted(s.versions)) or "-"),
        ]:
            t.add_row(name, value)
        return t

    def close(self) -> None:
        while self.stopper:
            with contextlib.suppress(Exception):
                self.stopper.pop()()


def run_demo(
    settings: Settings,
    console: Console,
    items_path: Path | None = None,
    events_path: Path | None = None,
) -> Stats:
    settings.demo.workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(settings, console, items_path, events_path)
    try:
        demo.broker()
        items, events = demo.data()
        asyncio.run(kafka_io.ensure_topics(settings))
        sent = asyncio.run(
            kafka_io.produce_lines(
                settings, kafka_io.read_lines(items), settings.topics.items, key_field="item_id"
            )
        )
        console.print(f"· catalogue: {sent.sent} items on topic {settings.topics.items}")
        demo.model(items, events)
        demo.worker()
        demo.stats.started = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo.stream(items, events))
        console.print(demo.summary())
    finally:
        demo.close()
    return demo.stats
