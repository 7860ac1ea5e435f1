"""Foundation against the REAL broker: CLI produce/consume, keys/partitions, topics, start/stop."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import Settings
from stream_app.kafka import io as kafka_io
from stream_app.kafka import local as kafka_local

pytestmark = pytest.mark.kafka
CLI = [sys.executable, "-m", "stream_app.cli"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def test_produce_then_consume_returns_the_same_events(kafka_settings: Settings, tiny_world: Path):
    events_file = tiny_world / "events.jsonl"
    lines = events_file.read_text().splitlines()[:300]
    src = Path(kafka_settings.data_dir).parent / "events300.jsonl"
    src.write_text("\n".join(lines) + "\n")
    topic, broker = kafka_settings.topics.events, kafka_settings.kafka.broker
    p = run_cli("produce", str(src), "--topic", topic, "--broker", broker)
    assert p.returncode == 0, p.stderr
    assert "sent 300 messages" in p.stderr
    c = run_cli(
        "consume",
        "--topic",
        topic,
        "--from-beginning",
        "--limit",
        "300",
        "--json",
        "--broker",
        broker,
        "--timeout",
        "20",
    )
    assert c.returncode == 0, c.stderr
    got = [json.loads(x) for x in c.stdout.splitlines()]
    assert len(got) == 300
    assert sorted(json.dumps(r["value"], sort_keys=True) for r in got) == sorted(
        json.dumps(json.loads(x), sort_keys=True) for x in lines
    )
    # key = user_id, and one user's events stay in one partition, in file order
    by_user: dict[str, list[tuple[int, int, str]]] = {}
    for r in got:
        assert r["key"] == r["value"]["user_id"]
        by_user.setdefault(r["key"], []).append(
            (r["partition"], r["offset"], r["value"]["event_id"])
        )
    for user, recs in by_user.items():
        assert len({p for p, _, _ in recs}) == 1, user
        in_file = [json.loads(x)["event_id"] for x in lines if json.loads(x)["user_id"] == user]
        assert [e for _, _, e in sorted(recs)] == in_file


def test_topics_are_created_with_partitions_and_compaction(kafka_settings: Settings):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def check():
        created = await kafka_io.ensure_topics(kafka_settings)
        assert set(created) == {
            kafka_settings.topics.events,
            kafka_settings.topics.items,
            kafka_settings.topics.recommendations,
            kafka_settings.topics.dlq,
            kafka_settings.topics.model_updates,
        }
        assert await kafka_io.ensure_topics(kafka_settings) == []  # idempotent
        admin = AIOKafkaAdminClient(**kafka_settings.kafka.client_kwargs())
        await admin.start()
        try:
            meta = await admin.describe_topics([kafka_settings.topics.events])
            assert len(meta[0]["partitions"]) == kafka_settings.topics.partitions
            res = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, kafka_settings.topics.items)]
            )
            configs = {c[0]: c[1] for c in res[0].resources[0][4]}
            assert configs["cleanup.policy"] == "compact"
        finally:
            await admin.close()

    asyncio.run(check())


def test_bad_lines_are_sent_keyless_and_reported(kafka_settings: Settings, tmp_path: Path):
    src = tmp_path / "mixed.jsonl"
    src.write_text('{"user_id": "u1", "x": 1}\nnot json at all\n{"item_id": "i9"}\n')
    topic, broker = kafka_settings.topics.events, kafka_settings.kafka.broker
    p = run_cli("produce", str(src), "--topic", topic, "--broker", broker)
    assert p.returncode == 0 and "1 not JSON" in p.stderr

    async def read():
        return [r async for r in kafka_io.consume_records(kafka_settings, topic, 3, True, 20)]

    recs = asyncio.run(read())
    assert sorted((r.key or b"").decode() for r in recs) == ["", "i9", "u1"]


def test_unreachable_broker_gives_a_clear_error():
    p = run_cli("consume", "--topic", "x", "--broker", "localhost:1", "--timeout", "2")
    assert p.returncode != 0
    assert "no Kafka broker answers at localhost:1" in p.stderr and "kafka.broker" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_start_stop_leaves_no_broker_process(tmp_path: Path):
    port = kafka_local.free_port(pair=True)
    data = tmp_path / "k"
    p = run_cli("kafka", "start", "--port", str(port), "--data-dir", str(data))
    assert p.returncode == 0, p.stderr
    pid = int((data / "broker.pid").read_text())
    assert Path(f"/proc/{pid}").exists()
    assert run_cli("kafka", "status", "--port", str(port), "--data-dir", str(data)).returncode == 0
    p = run_cli("kafka", "stop", "--port", str(port), "--data-dir", str(data))
    assert p.returncode == 0 and "kafka stopped" in p.stderr
    assert not kafka_local._alive(pid)
    ours = subprocess.run(
        ["pgrep", "-f", f"streamrec.data={data.resolve()}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert ours == []
    assert run_cli("kafka", "status", "--port", str(port), "--data-dir", str(data)).returncode == 1
