"""``streamrec replay --via-kafka --start-worker`` against the real broker: every event is
produced, every scored event is matched to the list the worker published after the user's
previous event, and throughput and latency percentiles are measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.settings import Settings
from stream_app.replay import report
from stream_app.replay.via_kafka import SYSTEM, run_via_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_replay_through_kafka_matches_every_scored_event(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
) -> None:
    replay = {"ks": (10,), "baselines": ("pop",), "ablations": (), "warmup_frac": 0.9}
    settings = kafka_settings.with_overrides(
        registry_dir=str(tiny_registry),
        **{f"replay.{k}": v for k, v in replay.items()},
        **{"replay.start_worker": True},
    )
    result = run_via_kafka(settings, tiny_world / "items.jsonl", tiny_world / "events.jsonl")
    kafka = result.kafka
    assert kafka is not None
    print(kafka.model_dump_json())  # in the CI log
    assert kafka.events_produced == result.data.n_events
    assert kafka.events_without_recommendation == 0
    assert kafka.scored_without_list == 0 and kafka.other_model_version == 0
    row = result.systems[SYSTEM]
    offline = result.systems["streamrec"]
    assert row["examples"] == offline["examples"] == result.counts["scored_events"]
    assert 0.0 <= row["hr@10"] <= 1.0
    # the worker runs the same core: its lists hit about as often as the offline replay's
    assert abs(row["hr@10"] - offline["hr@10"]) < 0.05
    for pct in (kafka.worker_latency_ms, kafka.end_to_end_ms):
        assert pct["p50"] <= pct["p99"]
    assert kafka.throughput_events_per_s > 0
    files = report.write(result, tmp_path / "report")
    assert (tmp_path / "report" / "latency.png").stat().st_size > 10_000
    assert "latency" in files
