"""Worker benchmark through the REAL broker: ``streamrec worker`` as a subprocess, an
open-loop producer and a consumer of the recommendations in this process.

    .venv/bin/python bench/worker_bench.py                   # world + model cached in var/bench
    .venv/bin/python bench/worker_bench.py --workers 2       # two workers sharing partitions
    .venv/bin/python bench/worker_bench.py --broker H:P --profile

Scenario (issue 4): 10,000 items, 5,000 users, K=4, 200 candidates scored per event. The world
is generated and a small model trained once (cached under ``--workdir``); a local broker is
started when ``--broker`` is not given. Measured, per phase, on fresh events (time order):

- max: a backlog produced at once; sustained events/s = recommendations over the middle 80 %
  of the phase's recommendation arrivals;
- fixed rates (open-loop: each event has an intended send time; latency is counted from it, so
  a producer or worker that falls behind shows up as latency, never as a lower rate);
- latency = event's intended send -> its recommendation received by this process's consumer
  (end to end through the broker); the worker's own receipt -> send time is shown beside it;
- CPU per event = worker process CPU time (utime + stime from /proc, all threads) / events;
  RSS (VmRSS, and VmHWM = peak) of each worker process;
- ceiling: a bare aiokafka consume -> produce loop (no processing; payloads the size of a real
  recommendation) over the same topics and broker, run after the worker is stopped.

``--profile`` runs one more worker under cProfile on a backlog and prints where the time goes.
All three (broker, worker(s), this driver) share the machine's CPUs: the numbers are for one
box, as a user running ``make bench`` gets them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from schemas.settings import Settings  # noqa: E402
from stream_app.kafka_io import ensure_topics, read_lines  # noqa: E402

console = Console()
CLK_TCK = os.sysconf("SC_CLK_TCK")
SEED = 3  # the replay benchmark's world seed: both benchmarks can share the world


# -- preparation (cached) -------------------------------------------------------------------
def prepare_world(workdir: Path, users: int, items: int, events: int) -> Path:
    world = workdir / "world"
    if not (world / "events.jsonl").exists():
        from stream_app.datagen.synthetic import generate_world

        console.print(f"generating the world: {items:,} items, {users:,} users, {events:,} events")
        generate_world(world, users=users, items=items, events=events, seed=SEED)
    return world


def prepare_registry(workdir: Path, world: Path) -> Path:
    from model_export.registry import Registry

    registry = workdir / "registry"
    if Registry(registry).current() is None:
        from model_export.pipeline import TrainOptions, run_training
        from model_export.train import TrainConfig

        console.print(f"training a small model into {registry} (1 epoch; cached for next runs)")
        t0 = time.perf_counter()
        run_training(
            Settings(),
            world / "items.jsonl",
            world / "events.jsonl",
            TrainOptions(train=TrainConfig(epochs=1)),
            registry_dir=registry,
        )
        console.print(f"trained in {time.perf_counter() - t0:.0f} s")
    return registry


def free_port(pair: bool = False) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as s2:
            try:
                s2.bind(("localhost", port + 1))
            except OSError:
                continue
        return port
    msg = "no free port"
    raise RuntimeError(msg)


def start_broker(workdir: Path, partitions: int) -> tuple[str, Path]:
    from stream_app import kafka_local

    base = Settings()
    data = workdir / "kafka"
    port = free_port(pair=True)
    console.print(f"starting a local Kafka broker on :{port} ({data})")
    kafka_local.start(port, data, base.kafka_version, base.cache_dir, partitions=partitions)
    return f"localhost:{port}", data


# -- the worker process ----------------------------------------------------------------------
@dataclass
class Worker:
    settings: Settings
    registry: Path
    data_dir: Path
    log: Path
    ort_threads: int
    profile: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        t = self.settings.topics
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
        env.update(
            {
                "STREAMREC_KAFKA__BROKER": self.settings.kafka.broker,
                "STREAMREC_APP_ID": self.settings.app_id,
                "STREAMREC_DATA_DIR": str(self.data_dir),
                "STREAMREC_REGISTRY_DIR": str(self.registry),
                "STREAMREC_TOPICS__EVENTS": t.events,
                "STREAMREC_TOPICS__ITEMS": t.items,
                "STREAMREC_TOPICS__RECOMMENDATIONS": t.recommendations,
                "STREAMREC_TOPICS__DLQ": t.dlq,
                "STREAMREC_TOPICS__MODEL_UPDATES": t.model_updates,
                "STREAMREC_TOPICS__PARTITIONS": str(t.partitions),
                "STREAMREC_SERVING__WEB_PORT": str(self.port),
                "STREAMREC_SERVING__DEVICE": self.settings.serving.device,
                "STREAMREC_SERVING__ORT_THREADS": str(self.ort_threads),
                "STREAMREC_SERVING__CANDIDATES": str(self.settings.serving.candidates),
                "STREAMREC_INTERESTS__K": str(self.settings.interests.k),
            }
        )
        return env

    def start(self) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "stream_app.cli", "worker", "--loglevel", "warn"]
        if self.profile is not None:
            cmd[1:1] = ["-m", "cProfile", "-o", str(self.profile)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://localhost:{self.port}{path}", timeout=5) as r:  # noqa: S310
            return r.read()

    async def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                msg = f"worker exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                raise RuntimeError(msg)
            try:
                if json.loads(self.get("/health")).get("status") == "ok":
                    return
            except OSError:
                pass
            await asyncio.sleep(0.5)
        msg = f"worker not ready after {timeout:.0f} s:\n{self.log.read_text()[-3000:]}"
        raise RuntimeError(msg)

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
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# -- traffic ---------------------------------------------------------------------------------
class Collector:
    """Consumes the recommendations topic (no group, from the end): per trigger event id, the
    arrival time here and the worker's own latency_ms."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.got: dict[str, tuple[float, float]] = {}
        self.sizes: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from stream_app.kafka_io import topic_partitions

        topic = self.settings.topics.recommendations
        self.consumer = AIOKafkaConsumer(
            **self.settings.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self.consumer.start()
        tps = [TopicPartition(topic, p) for p in await topic_partitions(self.settings, topic)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    doc = json.loads(m.value)
                    self.got[doc["trigger_event_id"]] = (now, doc["latency_ms"])
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

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.kafka.client_kwargs(), linger_ms=2, acks=1, max_batch_size=256 * 1024
    )


async def send_at_rate(
    settings: Settings, events: list[tuple[bytes, bytes, str]], rate: float | None
) -> dict[str, float]:
    """Open loop: event i is due at t0 + i / rate (all at once without a rate); returns each
    event id's intended send time (epoch seconds)."""
    prod = producer(settings)
    await prod.start()
    intended: dict[str, float] = {}
    t0 = time.time() + 0.05
    try:
        futs = []
        for i, (key, value, eid) in enumerate(events):
            due = t0 + i / rate if rate else time.time()
            ahead = due - time.time()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            intended[eid] = due
            futs.append(await prod.send(settings.topics.events, value, key=key))
        await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return intended


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def phase(
    name: str,
    settings: Settings,
    workers: list[Worker],
    col: Collector,
    events: list[tuple[bytes, bytes, str]],
    rate: float | None,
) -> dict[str, Any]:
    cpu0 = sum(w.cpu_s() for w in workers)
    in0 = [w.counter("streamrec_events_in_total") for w in workers]
    intended = await send_at_rate(settings, events, rate)
    ids = list(intended)
    missing = await col.wait_for(ids, timeout=max(60.0, len(ids) / 150))
    cpu = sum(w.cpu_s() for w in workers) - cpu0
    per_worker = [
        w.counter("streamrec_events_in_total") - a for w, a in zip(workers, in0, strict=True)
    ]
    arrivals = sorted(col.got[i][0] for i in ids if i in col.got)
    lat = [(col.got[i][0] - intended[i]) * 1000 for i in ids if i in col.got]
    inner = [col.got[i][1] for i in ids if i in col.got]
    n = len(arrivals)
    if rate is None and n > 10:  # backlog: steady state over the middle 80 % of arrivals
        lo, hi = int(n * 0.1), int(n * 0.9)
        throughput = (hi - lo) / max(arrivals[hi] - arrivals[lo], 1e-9)
    else:
        throughput = n / max(arrivals[-1] - min(intended.values()), 1e-9) if n else 0.0
    mem = [w.memory_mb() for w in workers]
    return {
        "phase": name,
        "target_rate": rate,
        "events": len(ids),
        "missing": missing,
        "events_per_s": throughput,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99),
        "worker_p50_ms": pct(inner, 50),
        "worker_p99_ms": pct(inner, 99),
        "cpu_ms_per_event": cpu * 1000 / max(len(ids), 1),
        "rss_mb": [round(m[0]) for m in mem],
        "peak_rss_mb": [round(m[1]) for m in mem],
        "events_per_worker": per_worker,
        "users": len({k for k, _, i in events if i in col.got}),
        "users_sent": len({k for k, _, _ in events}),
    }


async def bare_loop(
    settings: Settings, events: list[tuple[bytes, bytes, str]], payload: int
) -> dict[str, Any]:
    """The ceiling: consume the events and produce one record of ``payload`` bytes per event
    to the recommendations topic, nothing else (no state, no model)."""
    from stream_app.kafka_io import topic_partitions

    topic = settings.topics.events
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer.assign(tps)
    start = await consumer.end_offsets(tps)
    for tp, off in start.items():
        consumer.seek(tp, off)
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


# -- the run ---------------------------------------------------------------------------------
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


async def run(args: argparse.Namespace, broker: str, world: Path, registry: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    runs = Path(args.workdir) / "runs" / tag
    topics = {
        n: f"bench-{tag}-{n}"
        for n in ("events", "items", "recommendations", "dlq", "model_updates")
    }
    settings = Settings().with_overrides(
        **{
            "kafka.broker": broker,
            "app_id": f"bench-{tag}",
            "topics.partitions": args.partitions,
            "serving.device": args.device,
            "serving.candidates": 200,
            "interests.k": 4,
            **{f"topics.{k}": v for k, v in topics.items()},
        }
    )
    await ensure_topics(settings)
    n_items = await produce_items(settings, world)
    events = load_events(world)
    cursor = 0

    def take(n: int) -> list[tuple[bytes, bytes, str]]:
        nonlocal cursor
        if cursor + n > len(events):
            msg = f"the world has {len(events)} events; this run needs more (--events)"
            raise SystemExit(msg)
        cursor += n
        return events[cursor - n : cursor]

    workers = [
        Worker(settings, registry, runs / f"worker-{i}", runs / f"worker-{i}.log", args.ort_threads)
        for i in range(args.workers)
    ]
    rows: list[dict[str, Any]] = []
    col = Collector(settings)
    try:
        for w in workers:
            w.start()
        for w in workers:
            await w.wait_ready()
        await col.start()
        console.print(
            f"{args.workers} worker(s) ready (pids {[w.pid for w in workers]}); "
            f"{n_items:,} items; topics bench-{tag}-*, {args.partitions} partitions"
        )
        await phase("warm-up", settings, workers, col, take(args.warmup), 300)
        for rate in args.rates:
            row = await phase(
                f"{rate:,} ev/s", settings, workers, col, take(int(rate * args.seconds)), rate
            )
            rows.append(row)
            console.print(
                f"  {row['phase']}: p99 {row['p99_ms']:.0f} ms, {row['events_per_s']:.0f} ev/s"
            )
        row = await phase("max (backlog)", settings, workers, col, take(args.backlog), None)
        rows.insert(0, row)
        console.print(f"  max: {row['events_per_s']:.0f} ev/s")
        payload = int(np.mean(col.sizes)) if col.sizes else 1000
    finally:
        await col.stop()
        for w in workers:
            w.stop()
    prof = (
        await profile(args, settings, registry, runs, take(args.backlog)) if args.profile else None
    )
    ceiling = await bare_loop(settings, take(args.backlog), payload)
    rows.append(ceiling)
    result: dict[str, Any] = {
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "items": n_items,
        "users": len({k for k, _, _ in events}),
        "k": 4,
        "candidates": 200,
        "partitions": args.partitions,
        "ort_threads": args.ort_threads,
        "device": args.device,
        "rec_bytes": payload,
        "rows": rows,
        "ratio_to_ceiling": rows[0]["events_per_s"] / ceiling["events_per_s"],
    }
    if prof is not None:
        result["profile"] = prof
    return result


async def profile(
    args: argparse.Namespace,
    settings: Settings,
    registry: Path,
    runs: Path,
    events: list[tuple[bytes, bytes, str]],
) -> list[dict[str, Any]]:
    """One worker (the same consumer group and table, after the measured workers stopped)
    under cProfile on a backlog; cumulative time of the stages that matter."""
    prof = runs / "worker.prof"
    w = Worker(
        settings,
        registry,
        runs / "worker-prof",
        runs / "worker-prof.log",
        args.ort_threads,
        profile=prof,
    ).start()
    col = Collector(settings)
    try:
        await w.wait_ready()
        await col.start()
        row = await phase("profile", settings, [w], col, events, None)
    finally:
        await col.stop()
        w.stop()
    console.print(f"  profiled: {row['events_per_s']:.0f} ev/s under cProfile")
    return stage_times(pstats.Stats(str(prof)), int(sum(row["events_per_worker"])))


STAGES = [  # (label, function name, file fragment): cumulative time, overlapping on purpose
    ("agent batch (all of it)", "handle_batch", "worker/agents.py"),
    ("  decode + validate", "decode_all", "worker/processing.py"),
    ("  state update (apply_events)", "apply_events", "worker/processing.py"),
    ("  recommend (retrieve+rank+select)", "recommend_all", "worker/processing.py"),
    ("    score_batch", "score_batch", "core/engine.py"),
    ("      ranker ONNX run", "run", "onnxruntime_inference_collection.py"),
    ("      retrieval search", "search", "core/retrieval.py"),
    ("      candidate union", "_candidates", "core/engine.py"),
    ("    select (MMR, quotas, lists)", "select", "core/engine.py"),
    ("  table reads/writes (faust+rocksdb)", "__getitem__", "faust/tables/table.py"),
    ("  publish (send + await acks)", "_publish", "worker/agents.py"),
    ("  recommendation JSON", "recommendation_json", "worker/processing.py"),
    ("  live hit rate", "observe", "worker/hitrate.py"),
    ("event loop idle (select/epoll)", "select", "selectors.py"),
]


def stage_times(stats: pstats.Stats, events: int) -> list[dict[str, Any]]:
    total = stats.total_tt  # type: ignore[attr-defined]
    out = []
    for label, func, frag in STAGES:
        cum = sum(
            v[3]
            for (f, _, name), v in stats.stats.items()  # type: ignore[attr-defined]
            if name == func and frag in f
        )
        out.append(
            {
                "stage": label,
                "seconds": cum,
                "share": cum / total if total else 0.0,
                "us_per_event": cum * 1e6 / max(events, 1),
            }
        )
    return out


def tables(result: dict[str, Any]) -> list[Table]:
    w = result["workers"]
    t = Table(
        title=f"worker benchmark: {w} worker(s), {result['items']:,} items, "
        f"{result['users']:,} users, K={result['k']}, {result['candidates']} "
        f"candidates, {result['cpus']} CPUs, {result['partitions']} partitions"
    )
    for c in (
        "phase",
        "events/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "worker p99 ms",
        "CPU ms/event",
        "RSS MB (peak)",
        "events per worker",
        "users ok",
    ):
        t.add_column(c, justify="left" if c == "phase" else "right")
    for r in result["rows"]:
        if "p50_ms" not in r:
            t.add_row(r["phase"], f"{r['events_per_s']:,.0f}", *["-"] * 8)
            continue
        t.add_row(
            r["phase"] + (f" ({r['missing']} missing)" if r["missing"] else ""),
            f"{r['events_per_s']:,.0f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p95_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['worker_p99_ms']:.1f}",
            f"{r['cpu_ms_per_event']:.2f}",
            " / ".join(f"{a} ({b})" for a, b in zip(r["rss_mb"], r["peak_rss_mb"], strict=True)),
            " / ".join(f"{x:.0f}" for x in r["events_per_worker"]),
            f"{r['users']}/{r['users_sent']}",
        )
    t.caption = (
        f"max vs bare consume->produce ceiling: {result['ratio_to_ceiling']:.2f}x "
        f"(recommendation payload {result['rec_bytes']} B)"
    )
    out = [t]
    if "profile" in result:
        p = Table(title="where one worker's time goes (cProfile, backlog; cumulative, nested)")
        for c in ("stage", "share of process time", "µs / event"):
            p.add_column(c, justify="left" if c == "stage" else "right")
        for r in result["profile"]:
            p.add_row(r["stage"], f"{r['share'] * 100:.1f} %", f"{r['us_per_event']:.0f}")
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", help="HOST:PORT of a running broker (default: start one)")
    ap.add_argument("--workdir", default="var/bench")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=100_000, help="events in the generated world")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rates", default="500,1000,2000", help="fixed rates, events/s")
    ap.add_argument("--seconds", type=float, default=10.0, help="per fixed-rate phase")
    ap.add_argument("--backlog", type=int, default=15_000, help="events in the max phase")
    ap.add_argument("--warmup", type=int, default=1500)
    ap.add_argument("--ort-threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--profile", action="store_true", help="also profile a worker (cProfile)")
    ap.add_argument(
        "--json",
        dest="json_path",
        default=None,
        help="[default: WORKDIR/worker.json, or worker-Nw.json with N workers]",
    )
    args = ap.parse_args()
    args.rates = [int(x) for x in args.rates.split(",") if x]
    workdir = Path(args.workdir)
    world = prepare_world(workdir, args.users, args.items, args.events)
    registry = prepare_registry(workdir, world)
    broker, kafka_dir = (args.broker, None) if args.broker else start_broker(workdir, 8)
    try:
        result = asyncio.run(run(args, broker, world, registry))
    finally:
        if kafka_dir is not None:
            from stream_app import kafka_local

            kafka_local.stop(kafka_dir)
    for t in tables(result):
        console.print(t)
    name = "worker.json" if args.workers == 1 else f"worker-{args.workers}w.json"
    path = Path(args.json_path) if args.json_path else workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
