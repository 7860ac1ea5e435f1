"""The faust application, built from a Settings object (no import-time app, no autodiscovery).

``create_app(settings)`` declares the topics, the RocksDB-backed user-state table (raw bytes
values from ``state_to_bytes``, changelog in Kafka) and registers the agent and web modules
listed in ``AGENT_MODULES`` / ``WEB_MODULES`` explicitly. The worker runtime (model, catalogue
feed, model watcher, metrics) is given to each of those modules' ``register(app, runtime)`` and
added as the app's first dependency, started before faust's own services, so the catalogue
loads while faust recovers its tables.
"""

from __future__ import annotations

import importlib
import ipaddress
import socket
from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics

from schemas.settings import KafkaSettings, Settings
from stream_app.worker import acks
from stream_app.worker.runtime import Topics, WorkerRuntime
from stream_app.worker.sensors import LeanPrometheusMonitor

STATE_TABLE = "user-state"
AGENT_MODULES = ("stream_app.worker.agents",)
WEB_MODULES = ("stream_app.worker.web",)
MAX_REQUEST_BYTES = 16 * 1024 * 1024
PRODUCER_LINGER_S = 0.002


def broker_credentials(kafka: KafkaSettings) -> Any:
    """faust credentials for the Kafka security settings (None for PLAINTEXT)."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    ssl_context = kafka.ssl_context() if kafka.security_protocol in ("SSL", "SASL_SSL") else None
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=password,
        ssl_context=ssl_context,
        mechanism=kafka.sasl_mechanism or "PLAIN",
    )


def advertised_host(bind: str) -> str:
    """The host other workers forward per-user requests to: the bind address itself when it
    is a loopback one (nothing else reaches it), else this host's name (faust's default)."""
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = bind == "localhost"
    return bind if loopback else socket.gethostname()


class RawSchema(faust.Schema):
    """The record's key and value bytes as they are, without going through faust's codec
    registry per message (``faust.Schema`` with the "raw" codec gives the same bytes after a
    lookup and two calls per field, for every record the fetcher hands to a stream)."""

    def loads_key(self, app: Any, message: Any, **_: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **_: Any) -> Any:
        return message.value


def raw_schema() -> faust.Schema:
    """Bytes in, bytes out: decoding is ours (bad input -> DLQ), never faust's (a decode error
    inside faust ends the agent's stream silently). One instance per topic: a Schema object
    shared between topics and a table ended up decoding event keys as JSON."""
    return RawSchema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def create_app(settings: Settings, partitions: int | None = None) -> faust.App:
    """The worker app. ``partitions`` = the events topic's partition count (the state table's
    changelog must match it); default ``settings.topics.partitions``."""
    parts = partitions or settings.topics.partitions
    app = faust.App(
        settings.app_id,
        broker=settings.kafka.faust_broker_url(),
        broker_credentials=broker_credentials(settings.kafka),
        broker_client_id=settings.kafka.client_id,
        store="rocksdb://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=parts,
        web_enabled=True,
        web_port=settings.serving.web_port,
        web_bind=settings.serving.web_host,
        web_host=advertised_host(settings.serving.web_host),
        producer_max_request_size=MAX_REQUEST_BYTES,
        consumer_max_fetch_size=MAX_REQUEST_BYTES,
        consumer_auto_offset_reset="earliest",
        # batch the producer's requests: without it every recommendation and changelog write
        # became its own request (and its own GIL hand-off with faust's consumer thread)
        producer_linger=PRODUCER_LINGER_S,
        # a dead worker's partitions move to the others after this, not after faust's 60 s
        broker_session_timeout=settings.serving.session_timeout_s,
        broker_heartbeat_interval=settings.serving.session_timeout_s / 5,
        table_standby_replicas=settings.serving.standby_replicas,
    )
    t = settings.topics
    topics = Topics(
        events=app.topic(t.events, partitions=parts, schema=raw_schema()),
        recommendations=app.topic(t.recommendations, schema=raw_schema()),
        dlq=app.topic(t.dlq, schema=raw_schema()),
        model_updates=app.topic(t.model_updates, schema=raw_schema()),
    )
    # Table serializers come from key_type/value_type (bytes -> "raw"), not from a schema.
    table = app.Table(
        STATE_TABLE,
        partitions=parts,
        key_type=bytes,
        value_type=bytes,
        help="Per-user interest state (state_to_bytes).",
    )
    runtime = WorkerRuntime(settings, topics, table)
    acks.install(app, runtime.acks, runtime.fetch_repair)
    # faust's own sensors (consumer offsets and commit latency, rebalances, table operations,
    # sends) in the same registry as streamrec's: one /metrics page (worker/sensors.py)
    metrics = FaustMetrics.create(runtime.metrics.registry, "faust")
    app.monitor = LeanPrometheusMonitor(metrics=metrics)
    app.add_dependency(runtime)  # started before faust's own services
    for name in (*AGENT_MODULES, *WEB_MODULES):
        importlib.import_module(name).register(app, runtime)
    return app
