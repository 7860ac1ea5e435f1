"""The registry manifest is one typed, frozen, versioned model: what a trainer drafts is what
a reader gets back (with the registry's own fields), a manifest written before
``schema_version`` is read in the current layout, and a broken one is refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.manifest import Manifest, upgrade_legacy
from stream_app.registry import Registry, RegistryError
from tests.manifests import draft

LEGACY = {  # the flat layout versions were written in before schema_version (abridged)
    "parent": None,
    "space": "a683a6d1843b7e38",
    "encoder": {
        "model_path": "/m",
        "dim": 384,
        "mode": "frozen",
        "content_encoder": "encoder.onnx",
    },
    "config": {
        "text_dim": 384,
        "num_dim": 2,
        "d": 32,
        "hidden": 32,
        "k": 4,
        "recent_len": 20,
        "n_items": 300,
        "use_text": True,
        "use_ids": True,
        "use_cooc": True,
        "dropout": 0.1,
        "id_dropout": 0.1,
        "tasks": ["click", "purchase"],
        "task_weights": {"click": 1.0, "purchase": 0.5},
        "listwise_weight": 1.0,
        "retrieval_weight": 0.5,
        "purchase_loss": "clicked",
        "feat_dim": 130,
    },
    "interest_params": {
        "k": 4,
        "recent": 50,
        "half_life_s": 1209600.0,
        "purchase_weight": 3.0,
        "threshold": 0.45,
        "min_alpha": 0.1,
        "max_event_ids": 256,
        "max_purchased": 500,
    },
    "training": {
        "split": "loo",
        "d": 32,
        "hidden": 32,
        "epochs": 2,
        "negatives": 32,
        "seed": 1,
        "data": {
            "split": "loo",
            "holdout": "each user's last interaction (test) and the one before (valid)",
            "events": 6000,
            "skipped_unknown_items": 0,
            "users": 198,
            "window": {"start": 1767232402.744, "end": 1772375260.568},
            "train_until": 1771393080.759,
            "train_examples": 3967,
            "valid_examples": 198,
            "test_examples": 198,
            "events_sha256": "b" * 64,
        },
    },
    "metrics": {"streamrec.ndcg@10": 0.57, "streamrec.auc_purchase": float("nan")},
    "parity": {"ranker.onnx": 9.0e-08},
    "version": "v0001",
    "created_at": "2026-12-02T01:18:20.606836Z",
    "status": "published",
    "files": {"ranker.onnx": {"sha256": "c" * 64, "bytes": 7}},
}


def test_a_manifest_written_before_schema_version_reads_in_the_current_layout() -> None:
    m = Manifest.model_validate_json(json.dumps(LEGACY))
    assert m.schema_version == 1 and m.space == "a683a6d1843b7e38"
    assert m.engine.kind == "ranker-v1" and m.engine.config.k == 4
    assert m.engine.interests is not None and m.engine.interests.half_life_s == 1209600.0
    assert m.training.settings.split == "loo" and m.training.settings.d == 32
    assert m.training.settings.lr == 2e-3  # not recorded then: the default
    assert m.training.data.events_sha256 == "b" * 64 and m.training.data.train_until
    assert m.metric("streamrec", "ndcg@10") == 0.57
    assert m.created_at.utcoffset() is not None  # timezone-aware


def test_a_current_draft_is_not_taken_for_a_legacy_one() -> None:
    d = draft(parent="v0003")
    data = d.model_dump()
    assert upgrade_legacy(data) is data  # passes through untouched
    again = type(d)(**dict(d))  # built from field values (no schema_version key given)
    assert again == d and again.training.settings == d.training.settings


def test_what_is_published_is_what_is_read_back(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _, staging = reg.staging()
    (staging / "ranker.onnx").write_bytes(b"weights")
    d = draft(metrics={"streamrec.ndcg@10": 0.25, "streamrec.auc_purchase": float("nan")})
    version = reg.publish(staging, d, status="ablation", make_current=False)
    m = reg.manifest(version)
    assert m.version == version and m.status == "ablation" and reg.current() is None
    assert m.draft() == d.model_copy(update={"metrics": m.metrics})
    assert m.metric("streamrec", "auc_purchase") != m.metric("streamrec", "auc_purchase")  # NaN
    assert m.files["ranker.onnx"].bytes == 7
    with pytest.raises(ValidationError, match="frozen"):
        m.status = "published"  # type: ignore[misc]
    copied = reg.manifest(reg.copy_version(version, make_current=False, status="shadow"))
    assert copied.parent is None and copied.status == "shadow" and copied.engine == m.engine


def test_a_broken_manifest_is_refused_naming_the_file(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _, staging = reg.staging()
    version = reg.publish(staging, draft())
    path = reg.path(version) / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["engine"]
    path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match=r"(?s)manifest.json is not a valid manifest.*engine"):
        reg.manifest(version)
    assert list(reg.manifests()) == []  # left out of listings, not a crash
    assert reg.verify(version)[0].startswith(f"{version}: unreadable manifest")
