"""The faults benchmark's scenarios at CI size, against the REAL broker and real worker
processes (``bench/fault_scenarios.py``; ``bench/faults.py`` runs them at full size and
measures the targets): fuzzed input through the worker, kill -9 failover between two workers
with standby replicas and redelivery marking, and a table restored from its changelog after
the data dir is lost. Timing targets are the benchmark's; here: nothing lost, nothing wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fault_scenarios import Stage, failover, fuzz, restore
from schemas.settings import Settings
from stream_app.datagen.badinput import KINDS

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def stage(kafka_broker: str, tiny_world: Path, tiny_registry: Path, tmp_path: Path) -> Stage:
    base = Settings().with_overrides(
        **{"kafka.broker": kafka_broker, "topics.partitions": 4, "serving.device": "cpu"}
    )
    return Stage(base, tiny_world, tiny_registry, tmp_path / "runs")


async def test_fuzzed_input_through_the_worker(stage: Stage):
    out = await fuzz(stage, n_bad=1200, n_good=300, rate=100, max_bytes=64 * 1024)
    assert out.lost == 0, out.detail
    assert out.in_dlq == 1200 and out.recommended == out.events_in - 1200
    assert out.detail["wrong_reasons"] == []
    assert set(out.detail["kinds"]) == set(KINDS)  # every kind of bad input was in the mix
    assert out.detail["odd_user_ids"] > 0
    counters = out.detail["worker_counters"]
    assert counters["streamrec_events_in_total"] == out.events_in
    assert sum(v for k, v in counters.items() if k.startswith("streamrec_dlq_total")) == 1200
    crashed = next(c for c in out.checks if c.name == "worker crashed")
    assert crashed.met


async def test_kill_9_failover_loses_nothing_and_marks_redeliveries(stage: Stage):
    out = await failover(stage, rate=150, seconds=25, kill_at=6, resend=100)
    d = out.detail
    why = {k: d[k] for k in ("unlisted", "acks_withheld", "offset_gaps", "fetch_repairs")}
    assert out.lost == 0 and out.in_dlq == 0, why
    assert d["victim_partitions"] and sorted(d["survivor_after"]["active"]) == [0, 1, 2, 3]
    assert len(d["served_again_s"]) == len(d["victim_partitions"])
    assert out.seconds is not None and out.seconds < 60  # taken over (the target is the bench's)
    for name in (
        "users whose state lost or doubled an event",
        "first lists marked as redelivery",
        "resent events not marked",
    ):
        check = next(c for c in out.checks if c.name == name)
        assert check.met, check.describe()
    assert d["states_checked"] > 10 and d["resent_marked"] == d["resent"] == 100
    assert out.marked <= out.duplicates


async def test_a_table_restored_from_its_changelog_after_the_data_dir_is_lost(stage: Stage):
    out = await restore(stage, users=20_000, seed_users=100, sample=200)
    assert out.lost == 0 and out.events_in == 20_000
    assert out.detail["real_states"] == 100 and out.detail["sampled"] == 200
