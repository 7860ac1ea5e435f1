"""Torch weights and training-catalogue files kept with each registry version, so the
fine-tuning job can warm-start from it (ids remapped when the catalogue has grown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export.data import ItemSpace
from model_export.modeling import MultiTaskRanker, RankerConfig
from model_export.train import Ranker
from stream_app.core.covisit import CoVisit
from stream_app.core.vectors import VECTORS_FILE, text_sha
from stream_app.core.vectors import load_vectors as _load_vectors

WEIGHTS = "ranker.pt"
ITEM_INDEX = "item_index.json"
VECTORS = VECTORS_FILE
RETRIEVAL = "retrieval.npz"
COVISIT = "covisit.npz"


def save(directory: Path, ranker: Ranker, cfg: RankerConfig, space: ItemSpace) -> None:
    model = ranker.model
    torch.save(
        {"config": json.loads(cfg.to_json()), "state_dict": model.state_dict()}, directory / WEIGHTS
    )
    save_catalogue(directory, ranker.covisit, space)
    with torch.no_grad():  # numpy copy of the retrieval query projection, for the worker
        np.savez(
            directory / RETRIEVAL,
            slot_w=model.slot_proj.weight.T.numpy().astype(np.float32),
            slot_b=model.slot_proj.bias.numpy().astype(np.float32),
            d=cfg.d,
            content_w=model.items.content.weight.T.numpy().astype(np.float32),
        )


def save_catalogue(directory: Path, covisit: CoVisit | None, space: ItemSpace) -> None:
    """Either engine's catalogue files: item_index.json, covisit.npz (when there is a table)
    and the training catalogue's vectors (with text hashes when the texts are known)."""
    (directory / ITEM_INDEX).write_text(json.dumps(space.item_ids))
    if covisit is not None:
        covisit.save(directory / COVISIT)
    arrays: dict[str, Any] = {
        "item_ids": np.array(space.item_ids, dtype=object).astype(str),
        "text": space.text_vecs[1:],
        "content": space.content_vecs[1:],
        "num": space.num[1:],
    }
    if space.texts:  # keys vector reuse by text: an item edited since is encoded again
        arrays["text_sha"] = np.array([text_sha(t) for t in space.texts])
    np.savez(directory / VECTORS, **arrays)


def load_warm_start(version_dir: Path, cfg: RankerConfig, space: ItemSpace) -> Ranker:
    """A model for ``cfg`` initialised from a published version's weights, with its
    co-visitation table re-indexed to ``space``.

    Item-id rows are carried over by item id; items new to ``space`` start as the learned
    "unknown item" row (how the served model already treats them) until training specialises
    them."""
    blob = torch.load(version_dir / WEIGHTS, map_location="cpu", weights_only=True)
    old_cfg = RankerConfig.from_dict(blob["config"])
    check_architecture(version_dir, old_cfg, cfg, ("text_dim", "d", "hidden", "k", "recent_len"))
    old_ids = json.loads((version_dir / ITEM_INDEX).read_text())
    state = dict(blob["state_dict"])
    model = MultiTaskRanker(cfg)
    src = id_rows(old_ids, space)
    for key in ("items.id_emb.weight", "items.id_bias.weight"):
        # row 0 (unknown item) is kept; items new to this catalogue start as "unknown"
        state[key] = state[key][src].clone()
    model.load_state_dict(state)
    return Ranker(model, load_covisit(version_dir, old_ids, space))


def check_architecture(
    version_dir: Path, published: object, cfg: object, names: tuple[str, ...]
) -> None:
    """Refuse a warm start whose published config differs from ``cfg`` in a field of
    ``names`` (the field named, expected and actual values)."""
    for name in names:
        if getattr(published, name) != getattr(cfg, name):
            msg = (
                f"warm start from {version_dir.name}: expected {name}={getattr(cfg, name)}, "
                f"got {getattr(published, name)} in the published model"
            )
            raise ValueError(msg)


def id_rows(old_ids: list[str], space: ItemSpace) -> torch.Tensor:
    """[M+1] long: for each row of ``space`` (row 0 = unknown item) its row in a published
    version with items ``old_ids``; 0 for row 0 and for items the version did not know."""
    old_pos = {item: i + 1 for i, item in enumerate(old_ids)}
    return torch.tensor([0] + [old_pos.get(i, 0) for i in space.item_ids], dtype=torch.long)


def load_covisit(version_dir: Path, old_ids: list[str], space: ItemSpace) -> CoVisit | None:
    """A version's co-visitation table re-indexed to ``space`` (items it did not know: none)."""
    path = version_dir / COVISIT
    if not path.exists():
        return None
    table = CoVisit.load(path)
    to_new = np.array([0] + [space.index.get(i, 0) for i in old_ids], np.int64)
    nbr = np.zeros((space.n + 1, table.nbr.shape[1]), np.int64)
    weight = np.zeros((space.n + 1, table.nbr.shape[1]), np.float32)
    rows = to_new[1:] > 0
    nbr[to_new[1:][rows]] = to_new[table.nbr[1:][rows]]
    weight[to_new[1:][rows]] = table.weight[1:][rows]
    weight[nbr == 0] = 0.0
    return CoVisit(nbr, weight)


def load_vectors(version_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(item ids, pretrained text vectors, item-tower input vectors) of the training catalogue.
    Torch-free readers use ``stream_app.core.vectors.load_vectors`` (it has the text hashes)."""
    vecs = _load_vectors(version_dir)
    if vecs is None:
        msg = f"{version_dir}: no {VECTORS} (expected the training catalogue's vectors)"
        raise FileNotFoundError(msg)
    return vecs.item_ids, vecs.text, vecs.content
