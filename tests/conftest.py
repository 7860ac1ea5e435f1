"""Shared fixtures: a REAL Kafka broker (KRaft, from Maven Central jars) per test session,
a tiny synthetic world, and a tiny trained model version in a registry.

A broker that cannot start is an error, never a skip. Set STREAMREC_TEST_BROKER=host:port
to use an already running broker instead of starting one.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ML_SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for this test session."""
    external = os.environ.get("STREAMREC_TEST_BROKER")
    if external:
        yield external
        return
    from stream_app.kafka import local as kafka_local

    base = Settings()
    port = kafka_local.free_port(pair=True)
    data_dir = tmp_path_factory.mktemp("kafka")
    kafka_local.start(port, data_dir, base.kafka_version, base.cache_dir, partitions=4)
    try:
        yield f"localhost:{port}"
    finally:
        kafka_local.stop(data_dir)


@dataclass(frozen=True)
class SecureBroker:
    """A second real broker whose only client listener is SASL_SSL (SCRAM-SHA-512, TLS)."""

    broker: str
    username: str
    password: str
    ca_pem: Path
    data_dir: Path


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """``streamrec kafka start --secure`` for this test session (never skipped)."""
    from stream_app.kafka import local as kafka_local

    base = Settings()
    port = kafka_local.free_port(pair=True)
    data_dir = tmp_path_factory.mktemp("kafka-secure")
    password = f"pw-{secrets.token_urlsafe(16)}"
    st = kafka_local.start(
        port,
        data_dir,
        base.kafka_version,
        base.cache_dir,
        partitions=4,
        secure_listener=True,
        username="streamrec-test",
        password=password,
    )
    if st.secure is None or st.secure.secrets.password != password:
        msg = f"the broker in {data_dir} did not start with the test's credentials"
        raise RuntimeError(msg)
    try:
        yield SecureBroker(
            f"localhost:{port}", "streamrec-test", password, st.secure.ca_pem, data_dir
        )
    finally:
        kafka_local.stop(data_dir)


def _test_settings(broker: str, tmp_path: Path, **kafka: object) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = {
        name: f"{name}-{tag}"
        for name in ("events", "items", "recommendations", "dlq", "model_updates")
    }
    return Settings().with_overrides(
        **{
            "kafka.broker": broker,
            **{f"kafka.{k}": v for k, v in kafka.items()},
            "app_id": f"streamrec-test-{tag}",
            "data_dir": str(tmp_path / "data"),
            **{f"topics.{k}": v for k, v in topics.items()},
            "topics.partitions": 4,
        }
    )


@pytest.fixture
def kafka_settings(kafka_broker: str, tmp_path: Path) -> Settings:
    """Settings pointing at the test broker with topic names and app id unique to the test."""
    return _test_settings(kafka_broker, tmp_path)


@pytest.fixture
def secure_settings(secure_broker: SecureBroker, tmp_path: Path) -> Settings:
    """Like ``kafka_settings``, for the SASL_SSL broker, with its user, password and CA."""
    b = secure_broker
    return _test_settings(
        b.broker,
        tmp_path,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=b.username,
        sasl_password=b.password,
        ssl_cafile=str(b.ca_pem),
    )


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stream_app.datagen.synthetic import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, users=200, items=300, events=6000, seed=11)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT (2 layers, hidden 32; the transformers ``BertModelTester`` size)
    with the real MiniLM tokenizer files: a BERT-family encoder directory like any other,
    ~4 MB instead of 87 MB, for tests of the code around the encoder."""
    torch = pytest.importorskip("torch")
    import shutil

    from transformers import BertConfig, BertModel

    from model_export.encoder import default_model_path

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(out)
    src = Path(default_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, out / name)
    return str(out)


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path) -> Path:
    """A registry with one small but really trained version (CURRENT) on the real pretrained
    encoder (integration and end-to-end tests; the unit tier overrides it with ``tiny_bert``)."""
    pytest.importorskip("torch")
    from tests.model_versions import train_registry

    return train_registry(tmp_path_factory.mktemp("registry"), tiny_world)


@pytest.fixture(scope="session")
def ml_small() -> Path:
    if not (ML_SMALL / "ratings.csv").exists():
        pytest.skip(f"MovieLens ml-latest-small not present at {ML_SMALL}")
    return ML_SMALL


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line CI logs can be checked against: how many tests marked ``kafka`` ran against
    the real broker, and how they ended."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, "when", "call") in ("call", "setup") and "kafka" in getattr(
                rep, "keywords", {}
            ):
                if outcome == "passed" and rep.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        broker = os.environ.get("STREAMREC_TEST_BROKER", "a broker started by the session")
        parts = ", ".join(f"{n} {k}" for k, n in counts.items())
        terminalreporter.write_line(
            f"kafka-marked tests against the real broker ({broker}): {parts}"
        )
