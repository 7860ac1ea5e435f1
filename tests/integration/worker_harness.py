"""Helpers for the worker's integration tests (no tests here): a ``streamrec worker``
subprocess against the test broker (``WorkerProcess`` with a test's settings), producing with
aiokafka, reading topics back."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.settings import PREFIX, Settings
from stream_app.kafka.io import ensure_topics, read_lines
from stream_app.kafka.local import free_port
from stream_app.worker.process import WorkerProcess
from tests.model_versions import invert_ranker, publish_copy

__all__ = ["invert_ranker", "publish_copy"]  # re-exported for the tests that import from here

ROOT = Path(__file__).resolve().parents[2]


def worker_settings(settings: Settings, registry: Path, **serving: Any) -> Settings:
    """A test worker's settings: ``settings`` with the registry, a free web port, CPU, one ORT
    thread, log level info, and ``serving`` overrides (``rollback_window=150``)."""
    return settings.with_overrides(
        registry_dir=str(registry),
        log_level="info",
        **{"serving.web_port": free_port(), "serving.device": "cpu", "serving.ort_threads": 1},
        **{f"serving.{k}": v for k, v in serving.items()},
    )


def worker_process(
    settings: Settings, registry: Path, log_dir: Path, name: str = "worker", **serving: Any
) -> WorkerProcess:
    """A ``streamrec worker`` subprocess with ``worker_settings``."""
    return WorkerProcess(
        worker_settings(settings, registry, **serving), log_dir, name=name, cwd=ROOT
    )


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
    """``streamrec ARGS`` in a subprocess with a test worker's settings (topics, broker,
    registry) as its whole ``STREAMREC_*`` environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env={**env, **worker_settings(settings, registry).to_env()},
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
