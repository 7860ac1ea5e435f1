"""docker-compose.yml serves end to end (as far as it can be checked without an engine; CI
also runs ``docker-compose config``): Kafka keeps its data, one image tag, a seed service,
workers that heal, can be scaled and listen beyond loopback."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_kafka_keeps_its_data_on_a_volume_with_the_local_broker_settings():
    kafka = _compose()["services"]["kafka"]
    env = kafka["environment"]
    (volume,) = kafka["volumes"]
    assert volume.split(":")[1] == env["KAFKA_LOG_DIRS"]
    assert env["KAFKA_NUM_PARTITIONS"] == 8 and env["KAFKA_MESSAGE_MAX_BYTES"] == 10485760
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0


def test_one_image_tag_for_every_streamrec_service_and_a_seed_service():
    services = _compose()["services"]
    ours = {n: s for n, s in services.items() if n != "kafka"}
    assert set(ours) == {"seed", "worker", "finetune"}
    assert len({s["image"] for s in ours.values()}) == 1
    assert ours["seed"]["command"] == "streamrec seed"


def test_workers_heal_scale_and_listen_on_every_interface():
    worker = _compose()["services"]["worker"]
    assert worker["restart"] == "unless-stopped"
    assert "/health" in " ".join(worker["healthcheck"]["test"])
    data = worker["environment"]["STREAMREC_DATA_DIR"]
    assert data in worker["volumes"], "an anonymous volume: one data dir per replica"
    (ports,) = worker["ports"]
    host, _, container = ports.partition(":")
    first, _, last = host.partition("-")
    assert container == "6066" and int(last) - int(first) >= 1, "room for --scale worker=2"
    assert worker["environment"]["STREAMREC_SERVING__WEB_HOST"] == "0.0.0.0"
