"""ONNX export of the tower-v2 graphs (item tower, user tower, heads), each parity-gated like
ranker-v1's (``model_export.export``: onnxruntime vs torch on real inputs, ``ParityError``
above ``PARITY_ATOL``); a second, smaller shape (B=1, N=1) checks the dynamic axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model_export.data import Examples, ItemSpace
from model_export.export import _export, check_parity
from model_export.tower.modeling import HeadsExport, ItemTowerExport, UserTowerExport
from model_export.tower.train import Tower, item_feats, user_inputs
from schemas.onnx_spec import HEADS, ITEM_TOWER, USER_TOWER


def _np(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous()


@torch.no_grad()
def tower_samples(
    tower: Tower, space: ItemSpace, ex: Examples, n_users: int = 8, n_cands: int = 50
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Real inputs of each graph, named by graph file (held-out users, catalogue items)."""
    model = tower.model
    model.eval()
    n_items = min(64, space.n + 1)
    items = (
        torch.from_numpy(space.content_vecs[:n_items]).float(),
        torch.arange(n_items, dtype=torch.long),
        torch.from_numpy(space.num[:n_items]).float(),
    )
    feats = item_feats(model, space)
    idx = np.arange(min(n_users, len(ex)))
    u = user_inputs(feats, ex, idx)
    user_args = tuple(_np(u[n]) for n in USER_TOWER.input_names)
    out = model.user(*user_args)
    rng = np.random.default_rng(0)
    cand_np = rng.integers(1, space.n + 1, size=(len(idx), n_cands))
    cand_np[:, 0] = ex.recent[idx, 0].clip(min=1)  # candidates with co-visitation
    cooc = (
        tower.covisit.scores(ex.recent[idx], cand_np)
        if tower.covisit is not None
        else np.zeros(cand_np.shape, np.float32)
    )
    heads_args: tuple[torch.Tensor, ...] = (
        _np(out.interests),
        _np(out.weights),
        _np(feats[torch.from_numpy(cand_np)]),
        torch.from_numpy(cooc.astype(np.float32)),
    )
    if model.cfg.use_buy_prior:
        heads_args = (*heads_args, _np(out.buy_prior))
    return {ITEM_TOWER.file: items, USER_TOWER.file: user_args, HEADS.file: heads_args}


def _small(args: tuple[torch.Tensor, ...], file: str) -> tuple[torch.Tensor, ...]:
    """B=1 (and N=1 for the heads, 1 item for the item tower, L-3 for the user tower)."""
    if file == ITEM_TOWER.file:
        return tuple(a[1:2] for a in args)
    if file == USER_TOWER.file:
        n = max(1, args[0].shape[1] - 3)
        return tuple(a[:1, :n] for a in args)
    return (args[0][:1], args[1][:1], args[2][:1, :1], args[3][:1, :1], *(a[:1] for a in args[4:]))


def export_tower_graphs(
    tower: Tower, space: ItemSpace, ex: Examples, out_dir: Path, version: str
) -> dict[str, float]:
    """Export item_tower.onnx, user_tower.onnx, heads.onnx; returns max |diff| per file."""
    model = tower.model
    model.eval()
    samples = tower_samples(tower, space, ex)
    user_spec, heads_spec = USER_TOWER, HEADS
    if not model.cfg.use_buy_prior:
        user_spec, heads_spec = USER_TOWER.required(), HEADS.required()
    wrappers = {
        ITEM_TOWER.file: (ItemTowerExport(model.items), ITEM_TOWER),
        USER_TOWER.file: (UserTowerExport(model.user), user_spec),
        HEADS.file: (HeadsExport(model.heads), heads_spec),
    }
    parity: dict[str, float] = {}
    for file, (wrapper, spec) in wrappers.items():
        args = samples[file]
        path = _export(wrapper, args, spec, out_dir, version)
        small = check_parity(path, wrapper, _small(args, file), spec)
        parity[file] = max(small, check_parity(path, wrapper, args, spec))
    return parity
