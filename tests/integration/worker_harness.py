"""Helpers for the worker's integration tests (no tests here): run ``streamrec worker`` as a
subprocess against the test broker, produce with aiokafka, read topics back, query the
worker's web port."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.settings import Settings
from stream_app.kafka.io import ensure_topics, read_lines
from tests.model_versions import invert_ranker, publish_copy

__all__ = ["invert_ranker", "publish_copy"]  # re-exported for the tests that import from here

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def worker_env(settings: Settings, registry: Path, web_port: int) -> dict[str, str]:
    t = settings.topics
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(
        {
            "STREAMREC_KAFKA__BROKER": settings.kafka.broker,
            "STREAMREC_APP_ID": settings.app_id,
            "STREAMREC_DATA_DIR": str(settings.data_dir),
            "STREAMREC_REGISTRY_DIR": str(registry),
            "STREAMREC_TOPICS__EVENTS": t.events,
            "STREAMREC_TOPICS__ITEMS": t.items,
            "STREAMREC_TOPICS__RECOMMENDATIONS": t.recommendations,
            "STREAMREC_TOPICS__DLQ": t.dlq,
            "STREAMREC_TOPICS__MODEL_UPDATES": t.model_updates,
            "STREAMREC_TOPICS__PARTITIONS": str(t.partitions),
            "STREAMREC_SERVING__WEB_PORT": str(web_port),
            "STREAMREC_SERVING__DEVICE": "cpu",
            "STREAMREC_SERVING__ORT_THREADS": "1",
        }
    )
    return env


def streamrec_exe() -> list[str]:
    exe = Path(sys.executable).parent / "streamrec"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from stream_app.cli import main; sys.exit(main())"]


@dataclass
class WorkerProc:
    settings: Settings
    registry: Path
    log_dir: Path
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)  # extra settings, e.g. STREAMREC_SERVING__*
    name: str = "worker"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> WorkerProc:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "wb")  # noqa: SIM115 - closed by the child on exit
        self.proc = subprocess.Popen(
            [*streamrec_exe(), "worker", "--loglevel", "info"],
            env={**worker_env(self.settings, self.registry, self.web_port), **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        url = f"http://localhost:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health(self) -> dict[str, Any] | None:
        try:
            status, body = self.get("/health")
        except OSError:
            return None
        return {"http": status, **json.loads(body)}

    def metrics(self) -> dict[str, float]:
        from stream_app.worker.metrics import parse_counters

        return parse_counters(self.get("/metrics")[1].decode())

    def state(self, user_id: str) -> dict[str, Any] | None:
        status, body = self.get(f"/state/{user_id}")
        return json.loads(body) if status == 200 else None

    async def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                msg = (
                    f"worker exited with {self.proc.returncode if self.proc else '?'}:\n"
                    + self.log()[-4000:]
                )
                raise AssertionError(msg)
            h = self.health()
            if h is not None and h.get("status") == "ok":
                return h
            await asyncio.sleep(0.3)
        msg = f"worker not ready after {timeout}s:\n{self.log()[-4000:]}"
        raise AssertionError(msg)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


@dataclass(frozen=True)
class Sent:
    partition: int
    offset: int
    value: bytes


async def produce(
    settings: Settings,
    topic: str,
    records: list[tuple[bytes | None, bytes | None]],
    rate: float | None = None,
) -> list[Sent]:
    """Send (key, value) pairs in order; returns where each landed."""
    producer = AIOKafkaProducer(
        **settings.kafka.client_kwargs(),
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    out = []
    try:
        futs = []
        t0 = time.perf_counter()
        for i, (key, value) in enumerate(records):
            futs.append(await producer.send(topic, value, key=key))
            if rate:
                ahead = (i + 1) / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        for (_, value), fut in zip(records, futs, strict=True):
            md = await fut
            out.append(Sent(md.partition, md.offset, value or b""))
    finally:
        await producer.stop()
    return out


def event_records(lines: list[bytes]) -> list[tuple[bytes | None, bytes | None]]:
    return [(json.loads(v)["user_id"].encode(), v) for v in lines]


async def setup_topics_and_items(settings: Settings, items_path: Path) -> list[bytes]:
    await ensure_topics(settings)
    lines = read_lines(items_path)
    await produce(
        settings, settings.topics.items, [(json.loads(v)["item_id"].encode(), v) for v in lines]
    )
    return lines


class TopicReader:
    """Reads a topic from the beginning in the background (no consumer group)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.records: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            **self.settings.kafka.client_kwargs(),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for msgs in batch.values():
                self.records.extend(msgs)

    async def wait_for(self, predicate: Any, timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.records):
                return
            await asyncio.sleep(0.2)
        n = len(self.records)
        msg = f"timed out after {timeout}s waiting for {what or self.topic} ({n} records)"
        raise AssertionError(msg)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer is not None:
            await self._consumer.stop()


def copy_registry(src: Path, dst: Path) -> Path:
    """A private copy of a registry (tests that publish or tamper must not touch the shared one)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock", ".staging-*"))
    return dst


def rec_values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def run_cli(
    settings: Settings, registry: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``streamrec ARGS`` with the worker's environment (topics, broker, registry)."""
    return subprocess.run(
        [*streamrec_exe(), *args],
        env=worker_env(settings, registry, free_port()),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def versions_in(records: list[Any]) -> list[str]:
    """model_version of each recommendation, in partition/offset order per partition."""
    return [json.loads(r.value)["model_version"] for r in records]


def switches(records: list[Any]) -> dict[int, list[str]]:
    """Per partition: the sequence of model versions with repeats collapsed."""
    out: dict[int, list[str]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        seq = out.setdefault(r.partition, [])
        v = json.loads(r.value)["model_version"]
        if not seq or seq[-1] != v:
            seq.append(v)
    return out
