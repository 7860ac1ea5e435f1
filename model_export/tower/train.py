"""Training loop of engine tower-v2: AdamW, dropout, grad clip, early stopping on validation
NDCG@10 (full-catalogue ranking by p_click, the user's history masked), best state kept.

Per batch: (1) next-item softmax over the whole catalogue (sampled softmax with a logQ
popularity correction above ``FULL_SOFTMAX_MAX`` items) on the interest that best matches the
target (ComiRec hard selection); (2) the heads: BCE on the positive vs shared negatives (half
uniform, half by popularity, plus ``hard_negatives`` text neighbours of the positive when the
config asks; a negative equal to a row's positive is ignored) plus a listwise
softmax over the same candidates; (3) p(purchase | interaction) BCE on each positive.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model_export.data import CoVisitTables, Examples, ItemSpace
from model_export.tower.modeling import TowerConfig, TowerModel, UserOut
from model_export.train import (
    EarlyStopping,
    auto_negatives,
    default_threads,
    keep_ids,
    negative_probs,
    optimizer_step,
    ranking_report,
    sample_negatives,
    text_neighbors,
    validation_sample,
)
from schemas.reports import EpochRow
from schemas.settings import TrainingSettings
from stream_app.core.covisit import CoVisit

FULL_SOFTMAX_MAX = 50_000  # catalogues up to this size: full softmax; above: sampled + logQ
SAMPLED_SOFTMAX = 4096


@dataclass(frozen=True)
class Tower:
    """A trained tower and the co-visitation table its heads read (trained, evaluated,
    exported and published together)."""

    model: TowerModel
    covisit: CoVisit | None


@dataclass
class TowerResult:
    ranker: Tower
    history: list[EpochRow] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def _t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)


def user_inputs(feats: torch.Tensor, ex: Examples, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """USER_TOWER inputs for examples ``idx`` (feats [M+1, d+2]; padding rows are zeros)."""
    rec = _t(ex.recent[idx], torch.long)
    mask = (rec > 0).float()
    kind = ex.recent_kind[idx] if ex.recent_kind is not None else np.zeros(rec.shape, np.int8)
    age = ex.recent_age[idx] if ex.recent_age is not None else np.zeros(rec.shape, np.float32)
    return {
        "recent": feats[rec] * mask[..., None],
        "recent_mask": mask,
        "recent_kind": _t(kind, torch.long) * (rec > 0),
        "recent_age": _t(age) * mask,
    }


def item_feats(
    model: TowerModel, space: ItemSpace, known: np.ndarray | None = None
) -> torch.Tensor:
    ids = torch.arange(space.n + 1)
    if known is not None:
        ids = ids * torch.from_numpy(known)
    return model.items(_t(space.content_vecs), ids, _t(space.num))


def retrieval_loss(
    model: TowerModel,
    user: UserOut,
    feats: torch.Tensor,
    target: torch.Tensor,
    rng: np.random.Generator,
    log_q: np.ndarray,
) -> torch.Tensor:
    """Next-item softmax with the interest best matching the target (hard selection)."""
    d = model.cfg.d
    v = feats[:, :d]
    pick = torch.einsum("bkd,bd->bk", user.interests, v[target]).argmax(-1)
    u = user.interests[torch.arange(len(target)), pick]  # [B, d]
    scale = model.retrieval_scale()
    n = v.shape[0] - 1
    if n <= FULL_SOFTMAX_MAX:
        logits = scale * (u @ v[1:].T)
        return F.cross_entropy(logits, target - 1)
    negs = rng.choice(n + 1, size=SAMPLED_SOFTMAX, p=np.exp(log_q))
    neg_t = torch.from_numpy(negs)
    logits_neg = scale * (u @ v[neg_t].T) - torch.from_numpy(log_q[negs]).float()
    logits_neg = logits_neg.masked_fill(neg_t[None, :] == target[:, None], -1e4)
    pos = scale * (u * v[target]).sum(-1) - torch.from_numpy(log_q).float()[target]
    return F.cross_entropy(torch.cat([pos[:, None], logits_neg], 1), torch.zeros_like(target))


def train_tower(
    cfg: TowerConfig,
    tcfg: TrainingSettings,
    space: ItemSpace,
    train: Examples,
    valid: Examples,
    init: TowerModel | None = None,
    on_epoch: Callable[[EpochRow], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TowerResult:
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    torch.set_num_threads(tcfg.threads or default_threads())
    if init is None:
        model = TowerModel(cfg)
        model.items.init_text_pca(_t(space.content_vecs))
    else:
        model = init
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    pop, probs = negative_probs(train, space.n)
    smooth = (pop + 1.0) / (pop + 1.0)[1:].sum()
    smooth[0] = 0.0
    log_q = np.log(np.maximum(smooth, 1e-30))
    covisit = CoVisitTables.build(train, space.n) if cfg.use_cooc else None
    hard = tcfg.hard_negatives if cfg.hard_negatives else 0
    neighbors = text_neighbors(space.text_vecs, tcfg.hard_pool) if hard else None
    tower = Tower(model, covisit.full if covisit else None)
    n_neg = tcfg.negatives or auto_negatives(space.n)
    steps = max(1, math.ceil(len(train) / tcfg.batch_size))
    valid_eval = validation_sample(rng, valid, tcfg.eval_max)
    result = TowerResult(tower)
    stopping = EarlyStopping(model, tcfg, result, on_epoch)
    for epoch in range(1, tcfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(train))
        total, parts_sum = 0.0, dict[str, float]()
        for step in range(steps):
            idx = order[step * tcfg.batch_size : (step + 1) * tcfg.batch_size]
            if len(idx) == 0:
                continue
            known = keep_ids(rng, space.n, cfg.id_dropout)
            feats = item_feats(model, space, known)
            user = model.user(**user_inputs(feats, train, idx))
            pos = _t(train.target[idx], torch.long)
            negs = sample_negatives(rng, n_neg, probs, tcfg.pop_mix, space.n)
            cand_idx = np.concatenate(
                [train.target[idx, None], np.broadcast_to(negs, (len(idx), n_neg))], 1
            ).astype(np.int64)
            if neighbors is not None:  # items whose text is closest to the positive's
                pick = rng.integers(0, neighbors.shape[1], (len(idx), hard))
                near = np.take_along_axis(neighbors[train.target[idx]], pick, 1)
                cand_idx = np.concatenate([cand_idx, near], 1)
            cooc = None
            if covisit is not None:
                raw = covisit.for_training(train, idx, cand_idx) * known[cand_idx]
                cooc = torch.from_numpy(raw.astype(np.float32))
            out = model.heads(
                user.interests,
                user.weights,
                feats[torch.from_numpy(cand_idx)],
                cooc,
                user.buy_prior,
            )
            valid_mask = torch.from_numpy(cand_idx != cand_idx[:, :1])
            valid_mask[:, 0] = True
            y = torch.zeros(valid_mask.shape)
            y[:, 0] = 1.0
            w = valid_mask.float()
            bce = F.binary_cross_entropy_with_logits(out.click_logits, y, reduction="none")
            parts = {
                "retrieval": retrieval_loss(model, user, feats, pos, rng, log_q),
                "click": (bce * w).sum() / w.sum(),
                "listwise": F.cross_entropy(
                    out.click_logits.masked_fill(~valid_mask, -1e4), torch.zeros_like(pos)
                ),
                "purchase": F.binary_cross_entropy_with_logits(
                    out.cvr_logits[:, 0], _t(train.purchase[idx])
                ),
            }
            weights = {
                "retrieval": cfg.retrieval_weight,
                "click": cfg.click_weight,
                "listwise": cfg.listwise_weight,
                "purchase": cfg.purchase_weight,
            }
            loss = torch.stack([weights[k] * v for k, v in parts.items()]).sum()
            total += optimizer_step(opt, loss, parts, params, tcfg.grad_clip, parts_sum)
            if on_step is not None:
                on_step(epoch, step + 1)
        scores = evaluate(tower, space, valid_eval, ks=(10,))
        if stopping.end_epoch(epoch, scores, total, parts_sum, steps, t0):
            break
    stopping.finish()
    return result


@torch.no_grad()
def score_catalogue(
    tower: Tower, space: ItemSpace, ex: Examples, batch_cands: int = 400_000
) -> tuple[np.ndarray, np.ndarray]:
    """Full-catalogue scores as serving ranks: (click logits [E, M+1], p(purchase |
    interaction) [E, M+1]); column 0 = -inf."""
    model = tower.model
    model.eval()
    feats = item_feats(model, space)
    cand = feats[1:]
    m = cand.shape[0]
    bs = max(1, batch_cands // max(m, 1))
    click = np.full((len(ex), space.n + 1), -np.inf, np.float32)
    buy = np.zeros((len(ex), space.n + 1), np.float32)
    covisit = tower.covisit if model.cfg.use_cooc else None
    all_items = np.arange(1, space.n + 1)[None, :]
    for s in range(0, len(ex), bs):
        idx = np.arange(s, min(s + bs, len(ex)))
        user = model.user(**user_inputs(feats, ex, idx))
        cv = None
        if covisit is not None:
            c = np.broadcast_to(all_items, (len(idx), space.n))
            cv = torch.from_numpy(covisit.scores(ex.recent[idx], c))
        out = model.heads(
            user.interests, user.weights, cand.expand(len(idx), -1, -1), cv, user.buy_prior
        )
        click[idx, 1:] = out.click_logits.numpy()
        buy[idx, 1:] = torch.sigmoid(out.cvr_logits).numpy()
    return click, buy


def evaluate(
    tower: Tower, space: ItemSpace, ex: Examples, ks: tuple[int, ...] = (10, 20)
) -> dict[str, Any]:
    click, buy = score_catalogue(tower, space, ex)
    return ranking_report(click, ex, ks, buy)
