"""The registry manifest: what a model version is, written by training and read by the worker,
replay and fine-tuning through this one model (``stream_app.registry`` stores it as
``<version>/manifest.json``).

A trainer describes a version with a ``ManifestDraft`` (encoder, engine, training data and
settings, metrics, export parity, fine-tuning round); the registry adds what only it knows
(version id, creation time, status, sha256 and size of every file) and writes the frozen
``Manifest``. ``schema_version`` versions the layout; manifests written before it existed
(plain dicts, ``space`` and ``config`` at the top level) are upgraded when read.

``engine`` is the engine-specific part, tagged by ``kind``: the multi-interest ranker writes a
``RankerEngine``; another engine adds its own model with another ``kind`` to ``Engine``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.settings import TrainingSettings

SCHEMA_VERSION: Literal[1] = 1
_MODEL = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

Status = Literal["published", "refused", "shadow", "ablation"]
Metrics = dict[str, float]


class FileEntry(BaseModel):
    model_config = _MODEL

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class EncoderInfo(BaseModel):
    """The pretrained text encoder: where it came from and the vector space it defines."""

    model_config = _MODEL

    model_path: str
    dim: int = Field(ge=1, description="Text vector size.")
    mode: str = Field(description="Transfer mode it was trained with: frozen | top-N | full.")
    space: str = Field(description="Id of the encoder's vector space (hash of its files).")
    content_encoder: str = Field(
        "encoder.onnx", description="Graph of the item tower's text input (tuned encoders)."
    )


class TrainingWindow(BaseModel):
    model_config = _MODEL

    start: float  # epoch seconds of the first event
    end: float  # of the last


class TrainingData(BaseModel):
    """The events a version was trained on and how they were split."""

    model_config = _MODEL

    split: Literal["time", "loo"]
    events: int = Field(ge=0)
    users: int = Field(ge=0)
    skipped_unknown_items: int = Field(0, ge=0)
    window: TrainingWindow
    train_until: float | None = Field(
        description="Latest time of a training target (None: no training example)."
    )
    train_examples: int = Field(ge=0)
    valid_examples: int = Field(ge=0)
    test_examples: int = Field(ge=0)
    test_examples_scored: int | None = Field(None, description="Test examples sampled, if fewer.")
    holdout: str | None = Field(None, description="loo: what was held out.")
    valid_from: float | None = Field(None, description="time: validation starts here.")
    test_from: float | None = Field(None, description="time: test starts here.")
    events_sha256: str | None = Field(None, description="The events file trained on.")
    events_file: str | None = None
    round: str | None = Field(None, description="Fine-tuning: the round (buffer watermark).")


class TrainingRecord(BaseModel):
    model_config = _MODEL

    settings: TrainingSettings
    data: TrainingData


class InterestRecord(BaseModel):
    """The interest-state definition a ranker version was trained with
    (``stream_app.core.interests.InterestParams``)."""

    model_config = _MODEL

    k: int = Field(ge=1)
    recent: int = Field(ge=1)
    half_life_s: float = Field(gt=0)
    purchase_weight: float = Field(gt=0)
    threshold: float
    min_alpha: float
    max_event_ids: int = Field(ge=1)
    max_purchased: int = Field(ge=0)


class RankerConfigRecord(BaseModel):
    """``model_export.modeling.RankerConfig`` as saved with a version, plus its feature size."""

    model_config = _MODEL

    text_dim: int
    num_dim: int
    d: int
    hidden: int
    k: int
    recent_len: int
    n_items: int
    use_text: bool
    use_ids: bool
    use_cooc: bool
    dropout: float
    id_dropout: float
    tasks: tuple[str, ...]
    task_weights: dict[str, float]
    listwise_weight: float
    retrieval_weight: float
    purchase_loss: str
    feat_dim: int


class RankerEngine(BaseModel):
    """The multi-interest ranker (rule-built interest slots, target-attention ranker)."""

    model_config = _MODEL

    kind: Literal["ranker-v1"] = "ranker-v1"
    config: RankerConfigRecord
    interests: InterestRecord | None = Field(
        None, description="None: written before it was recorded (readers use the settings)."
    )


class TowerConfigRecord(BaseModel):
    """``model_export.tower.TowerConfig`` as saved with a version (engine tower-v2)."""

    model_config = _MODEL

    text_dim: int = Field(ge=1)
    num_dim: int = Field(ge=0)
    d: int = Field(ge=1, description="Interest / item vector size.")
    k: int = Field(ge=1, description="Interests the tower extracts.")
    recent_len: int = Field(ge=1, description="Recent items the tower reads (L).")
    n_items: int = Field(ge=0, description="Items with an id embedding (1..n_items).")
    layers: int = Field(ge=0, description="Self-attention layers over the recent items.")
    heads: int = Field(ge=1, description="Attention heads per layer.")
    dropout: float = Field(ge=0, lt=1)
    use_ids: bool
    use_cooc: bool
    use_buy_prior: bool = Field(
        default=False,
        description=(
            "The purchase head reads the user's purchase share among the recent items "
            "(USER_TOWER/HEADS tensor buy_prior); False for versions trained before it."
        ),
    )
    feat_dim: int = Field(ge=1, description="d + 2 (schemas.onnx_spec.tower_feat_slices).")


class TowerEngine(BaseModel):
    """The learned multi-interest user tower (ComiRec-SA family) + light multi-task heads."""

    model_config = _MODEL

    kind: Literal["tower-v2"] = "tower-v2"
    config: TowerConfigRecord
    interests: InterestRecord | None = Field(
        None, description="The interest-state definition (recent items kept, ids, purchases)."
    )


Engine = Annotated[RankerEngine | TowerEngine, Field(discriminator="kind")]


class RoundRecord(BaseModel):
    """A fine-tuning round: its id, the data counts and the gate's numbers."""

    model_config = _MODEL

    id: str
    counts: dict[str, int]
    candidate: Metrics
    current: Metrics
    tolerance: float


class ShadowRecord(BaseModel):
    """The workers' online verdict on a shadow candidate."""

    model_config = _MODEL

    reason: str
    current_hit_rate: float
    shadow_hit_rate: float
    evaluated: int
    events: int
    workers: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class ManifestDraft(BaseModel):
    """What a trainer knows about a version it is about to publish."""

    model_config = _MODEL

    schema_version: Literal[1] = SCHEMA_VERSION
    parent: str | None = Field(description="CURRENT when it was trained (warm start source).")
    encoder: EncoderInfo
    engine: Engine
    training: TrainingRecord
    metrics: Metrics = Field(default_factory=dict, description="'<system>.<metric>' on test.")
    parity: Metrics = Field(
        default_factory=dict, description="Per ONNX graph: max |onnx - torch| at export."
    )
    round: RoundRecord | None = None
    refused_reason: str | None = None
    shadow: ShadowRecord | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade_legacy(data) if isinstance(data, dict) else data

    @property
    def space(self) -> str:
        return self.encoder.space

    def metric(self, system: str, name: str) -> float | None:
        return self.metrics.get(f"{system}.{name}")


class Manifest(ManifestDraft):
    """A published version (``<registry>/<version>/manifest.json``)."""

    version: str = Field(pattern=r"^v\d{4,}$")
    created_at: AwareDatetime
    status: Status
    files: dict[str, FileEntry]

    def draft(self, **changes: Any) -> ManifestDraft:
        """This version's description as a draft for another version (a copy), with
        ``changes`` to top-level fields (validated)."""
        registry_fields = set(Manifest.model_fields) - set(ManifestDraft.model_fields)
        data = self.model_dump(exclude=registry_fields)
        return ManifestDraft.model_validate({**data, **changes})

    def with_status(self, status: Status, **changes: Any) -> Manifest:
        """The same manifest with another status (and other top-level fields), validated."""
        return Manifest.model_validate({**self.model_dump(), **changes, "status": status})


def upgrade_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """A manifest written before ``schema_version`` (flat dicts: ``space``, ``config``,
    ``interest_params`` and flat ``training`` options at the top) in the current layout;
    anything else passes through."""
    if "schema_version" in data or "engine" in data:
        return data
    d = dict(data)
    encoder = dict(d.pop("encoder", None) or {})
    encoder.setdefault("space", d.pop("space", ""))
    d["encoder"] = encoder
    config = d.pop("config", None)
    interests = d.pop("interest_params", None)
    if config is not None:
        d["engine"] = {"kind": "ranker-v1", "config": config, "interests": interests}
    training = dict(d.pop("training", None) or {})
    if training:
        known = set(TrainingSettings.model_fields)
        d["training"] = {
            "settings": {k: v for k, v in training.items() if k in known},
            "data": training.get("data"),
        }
    d["schema_version"] = SCHEMA_VERSION
    return d
