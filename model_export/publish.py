"""Export a trained ranker and publish it as a registry version: every ONNX graph (each
parity-gated: ``ParityError`` aborts before anything is published), the tokenizer, the torch
weights and the training catalogue's vectors, then the manifest (``schemas.manifest``), written
last by the registry's atomic publish."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from model_export import checkpoint
from model_export.data import ItemSpace, SplitData
from model_export.encoder import encoder_space_id, save_tokenizer
from model_export.export import export_encoder, export_item_tower, export_ranker
from model_export.train import Ranker, batch_inputs
from schemas.manifest import (
    EncoderInfo,
    Engine,
    InterestRecord,
    ManifestDraft,
    Metrics,
    RankerConfigRecord,
    RankerEngine,
    RoundRecord,
    Status,
    TrainingRecord,
)
from stream_app.registry import Registry

if TYPE_CHECKING:
    from model_export.pipeline import Prepared

CONTENT_ENCODER = "content_encoder.onnx"


def manifest_draft(
    prep: Prepared,
    systems: dict[str, Metrics],
    parent: str | None,
    parity: Metrics | None = None,
    round_record: RoundRecord | None = None,
    refused_reason: str | None = None,
) -> ManifestDraft:
    """The manifest of a version trained from ``prep``: encoder, engine config and interest
    definition, training settings and data, test metrics (``systems``), export parity."""
    cfg = prep.ranker_config()
    engine = RankerEngine(
        config=RankerConfigRecord(**json.loads(cfg.to_json()), feat_dim=cfg.feat_dim),
        interests=InterestRecord(**asdict(prep.params)),
    )
    return draft_for(prep, engine, systems, parent, parity, round_record, refused_reason)


def draft_for(
    prep: Prepared,
    engine: Engine,
    systems: dict[str, Metrics],
    parent: str | None,
    parity: Metrics | None,
    round_record: RoundRecord | None,
    refused_reason: str | None,
) -> ManifestDraft:
    """Either engine's manifest: encoder info, ``engine``, training settings and data, test
    metrics flattened to ``system.metric``, export parity, round and refusal."""
    tuned = prep.tuned_encoder is not None
    return ManifestDraft(
        parent=parent,
        encoder=EncoderInfo(
            model_path=prep.model_path,
            dim=int(prep.space.text_vecs.shape[1]),
            mode=prep.opts.encoder_mode,
            space=encoder_space_id(prep.model_path),
            content_encoder=CONTENT_ENCODER if tuned else "encoder.onnx",
        ),
        engine=engine,
        training=TrainingRecord(settings=prep.opts, data=prep.data.meta),
        metrics={
            f"{system}.{name}": value
            for system, row in systems.items()
            for name, value in row.items()
        },
        parity=parity or {},
        round=round_record,
        refused_reason=refused_reason,
    )


@contextmanager
def staged(registry: Registry) -> Iterator[tuple[str, Path]]:
    """(version, staging dir) for a new version; the staging dir is removed when the block
    raises (nothing half-written is left behind)."""
    version, staging = registry.staging()
    try:
        yield version, staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export_encoders(prep: Prepared, staging: Path, version: str) -> Metrics:
    """encoder.onnx (and content_encoder.onnx with a tuned encoder) plus the tokenizer;
    returns parity per graph file."""
    texts, tuned = prep.space.texts, prep.tuned_encoder
    parity = {"encoder.onnx": export_encoder(prep.encoder, prep.tokenizer, texts, staging, version)}
    if tuned is not None:
        parity[CONTENT_ENCODER] = export_encoder(
            tuned, prep.tokenizer, texts, staging, version, file=CONTENT_ENCODER
        )
    return parity


def publish_version(
    prep: Prepared,
    ranker: Ranker,
    systems: dict[str, Metrics],
    registry: Registry,
    parent: str | None,
    make_current: bool = True,
    status: Status = "published",
    round_record: RoundRecord | None = None,
    refused_reason: str | None = None,
) -> tuple[str, Metrics]:
    """Export every graph, write tokenizer/weights/vectors, then publish atomically.
    Returns (version, parity per graph)."""
    space, model = prep.space, ranker.model
    with staged(registry) as (version, staging):
        parity = export_encoders(prep, staging, version)
        ids = np.arange(space.n + 1, dtype=np.int64)
        parity["item_tower.onnx"] = export_item_tower(
            model, space.content_vecs, ids, space.num, staging, version
        )
        parity["ranker.onnx"] = export_ranker(
            model, _ranker_sample(ranker, space, prep.data), staging, version
        )
        save_tokenizer(prep.tokenizer, staging / "tokenizer")
        checkpoint.save(staging, ranker, prep.ranker_config(), space)
    draft = manifest_draft(prep, systems, parent, parity, round_record, refused_reason)
    return registry.publish(staging, draft, make_current=make_current, status=status), parity


def keep_refused_weights(
    prep: Prepared,
    ranker: Ranker,
    systems: dict[str, Metrics],
    registry: Registry,
    parent: str | None,
    round_record: RoundRecord | None,
    refused_reason: str,
) -> str:
    """A version with only the torch weights of a candidate whose export failed (status
    ``refused``, never served), kept for inspection with the reason."""
    version, staging = registry.staging()
    checkpoint.save(staging, ranker, prep.ranker_config(), prep.space)
    draft = manifest_draft(prep, systems, parent, None, round_record, refused_reason)
    registry.publish(staging, draft, make_current=False, status="refused")
    return version


def _ranker_sample(ranker: Ranker, space: ItemSpace, data: SplitData) -> dict[str, np.ndarray]:
    """Real ranker inputs (test users, catalogue candidates) for the export's parity check."""
    model, covisit = ranker.model, ranker.covisit
    ex = data.test if len(data.test) >= 4 else data.train
    idx = np.arange(min(8, len(ex)))
    with torch.no_grad():
        model.eval()
        feats = model.items(
            torch.from_numpy(space.content_vecs),
            torch.arange(space.n + 1),
            torch.from_numpy(space.num),
        )
        inputs = batch_inputs(feats, ex, idx)
        rng = np.random.default_rng(0)
        cand_np = rng.integers(1, space.n + 1, size=(len(idx), 50))
        cand_np[:, 0] = ex.recent[idx, 0].clip(min=1)  # some candidates with co-visitation
        inputs["cand"] = feats[torch.from_numpy(cand_np)]
        inputs["cooc"] = torch.from_numpy(
            covisit.scores(ex.recent[idx], cand_np)
            if covisit
            else np.zeros(cand_np.shape, np.float32)
        )
    return {k: v.numpy().astype(np.float32) for k, v in inputs.items()}
