"""Publish a trained tower-v2 as a registry version: encoder(s) and tokenizer as ranker-v1
(``model_export.publish``), the three tower graphs (each parity-gated: ``ParityError`` aborts
before anything is published), item index, co-visitation table, training vectors, torch
weights, then the manifest (``TowerEngine``), written last by the registry's atomic publish."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from model_export.encoder import save_tokenizer
from model_export.publish import draft_for, export_encoders, staged
from model_export.tower import checkpoint
from model_export.tower.export import export_tower_graphs
from model_export.tower.modeling import TowerConfig
from model_export.tower.train import Tower
from schemas.manifest import (
    InterestRecord,
    ManifestDraft,
    Metrics,
    RoundRecord,
    Status,
    TowerConfigRecord,
    TowerEngine,
)
from stream_app.registry import Registry

if TYPE_CHECKING:
    from model_export.pipeline import Prepared


def tower_config(prep: Prepared) -> TowerConfig:
    o = prep.opts
    return TowerConfig(
        text_dim=int(prep.space.content_vecs.shape[1]),
        num_dim=int(prep.space.num.shape[1]),
        d=o.d,
        k=prep.params.k,
        recent_len=o.recent_len,
        n_items=prep.space.n,
        layers=o.tower_layers,
        heads=o.tower_heads,
        dropout=o.dropout,
        use_ids=o.use_ids,
    )


def config_record(cfg: TowerConfig) -> TowerConfigRecord:
    names = TowerConfigRecord.model_fields
    return TowerConfigRecord(
        **{k: v for k, v in asdict(cfg).items() if k in names}, feat_dim=cfg.feat_dim
    )


def manifest_draft(
    prep: Prepared,
    cfg: TowerConfig,
    systems: dict[str, Metrics],
    parent: str | None,
    parity: Metrics | None = None,
    round_record: RoundRecord | None = None,
    refused_reason: str | None = None,
) -> ManifestDraft:
    engine = TowerEngine(config=config_record(cfg), interests=InterestRecord(**asdict(prep.params)))
    return draft_for(prep, engine, systems, parent, parity, round_record, refused_reason)


def publish_version(
    prep: Prepared,
    tower: Tower,
    systems: dict[str, Metrics],
    registry: Registry,
    parent: str | None,
    make_current: bool = True,
    status: Status = "published",
    round_record: RoundRecord | None = None,
    refused_reason: str | None = None,
) -> tuple[str, Metrics]:
    """Export every graph, write tokenizer/weights/vectors, then publish atomically.
    Returns (version, parity per graph file)."""
    space, cfg = prep.space, tower.model.cfg
    with staged(registry) as (version, staging):
        parity = export_encoders(prep, staging, version)
        ex = prep.data.test if len(prep.data.test) >= 4 else prep.data.train
        parity.update(export_tower_graphs(tower, space, ex, staging, version))
        save_tokenizer(prep.tokenizer, staging / "tokenizer")
        checkpoint.save(staging, tower, cfg, space)
    draft = manifest_draft(prep, cfg, systems, parent, parity, round_record, refused_reason)
    return registry.publish(staging, draft, make_current=make_current, status=status), parity


def keep_refused_weights(
    prep: Prepared,
    tower: Tower,
    systems: dict[str, Metrics],
    registry: Registry,
    parent: str | None,
    round_record: RoundRecord | None,
    refused_reason: str,
) -> str:
    """A version with only the torch weights of a candidate whose export failed (status
    ``refused``, never served), kept for inspection with the reason."""
    version, staging = registry.staging()
    checkpoint.save(staging, tower, tower.model.cfg, prep.space)
    draft = manifest_draft(
        prep, tower.model.cfg, systems, parent, None, round_record, refused_reason
    )
    registry.publish(staging, draft, make_current=False, status="refused")
    return version
