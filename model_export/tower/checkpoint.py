"""Torch weights of a tower-v2 version (``tower.pt``: config + state dict) and the warm start
from them: item-id rows carried over by item id (items new to the catalogue start as the
unknown item, text alone), the co-visitation table re-indexed."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model_export import checkpoint
from model_export.data import ItemSpace
from model_export.tower.modeling import TowerConfig, TowerModel
from model_export.tower.train import Tower

WEIGHTS = "tower.pt"
# what must match between a published tower and the one warm-started from it
ARCHITECTURE = ("text_dim", "num_dim", "d", "k", "recent_len", "layers", "heads", "use_ids")
ID_ROWS = ("items.id_emb.weight", "items.id_bias.weight")
# parameters added after versions were published: a warm start from such a version starts
# them at their initial value (``heads.e``: the purchase head's buy-prior gain)
NEW_PARAMS = ("heads.e",)


def save(directory: Path, tower: Tower, cfg: TowerConfig, space: ItemSpace) -> None:
    """tower.pt, item_index.json, covisit.npz (with use_cooc) and the catalogue's vectors
    (written exactly as ranker-v1's ``checkpoint.save`` writes them)."""
    torch.save(
        {"config": json.loads(cfg.to_json()), "state_dict": tower.model.state_dict()},
        directory / WEIGHTS,
    )
    checkpoint.save_catalogue(directory, tower.covisit, space)


def with_new_params(model: TowerModel, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` plus ``model``'s own initial values of the ``NEW_PARAMS`` it lacks."""
    fresh = model.state_dict()
    return {**{k: fresh[k] for k in NEW_PARAMS if k in fresh and k not in state}, **state}


def load_warm_start(version_dir: Path, cfg: TowerConfig, space: ItemSpace) -> Tower:
    """A model for ``cfg`` initialised from a published tower-v2 version's weights; a
    different architecture is refused with the field named."""
    path = version_dir / WEIGHTS
    if not path.exists():
        msg = f"warm start from {version_dir.name}: no {WEIGHTS} (not a tower-v2 version?)"
        raise ValueError(msg)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    old = TowerConfig.from_dict(blob["config"])
    checkpoint.check_architecture(version_dir, old, cfg, ARCHITECTURE)
    old_ids = json.loads((version_dir / checkpoint.ITEM_INDEX).read_text())
    src = checkpoint.id_rows(old_ids, space)
    state = dict(blob["state_dict"])
    for key in ID_ROWS:
        rows = state[key][src].clone()
        rows[src == 0] = 0.0  # unknown / new items: no id embedding, no id bias
        state[key] = rows
    model = TowerModel(cfg)
    model.load_state_dict(with_new_params(model, state))
    covisit = checkpoint.load_covisit(version_dir, old_ids, space) if cfg.use_cooc else None
    return Tower(model, covisit)
