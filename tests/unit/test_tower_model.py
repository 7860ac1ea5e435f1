"""Engine tower-v2's torch model (``model_export.tower``) on tiny random configs: shapes, mask
handling, distinct interests, training on a synthetic sequence task, early stopping."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_export.data import Examples, ItemSpace, popularity  # noqa: E402
from model_export.tower.modeling import TowerConfig, TowerModel  # noqa: E402
from model_export.tower.train import evaluate, train_tower  # noqa: E402
from model_export.train import ranking_report  # noqa: E402
from schemas.onnx_spec import tower_feat_slices  # noqa: E402
from schemas.settings import TrainingSettings  # noqa: E402

CFG = TowerConfig(text_dim=16, num_dim=2, d=16, k=3, recent_len=6, n_items=40, dropout=0.0)


def model(seed: int = 0, **changes: object) -> TowerModel:
    torch.manual_seed(seed)
    cfg = TowerConfig(**{**CFG.__dict__, **changes})  # type: ignore[arg-type]
    return TowerModel(cfg).eval()


def user_batch(b: int, n_valid: list[int], seed: int = 0) -> tuple[Any, ...]:
    g = torch.Generator().manual_seed(seed)
    cfg = CFG
    recent = torch.randn(b, cfg.recent_len, cfg.feat_dim, generator=g)
    mask = torch.zeros(b, cfg.recent_len)
    for i, n in enumerate(n_valid):
        mask[i, :n] = 1.0
    kind = torch.randint(0, 2, (b, cfg.recent_len), generator=g) * mask.long()
    age = torch.rand(b, cfg.recent_len, generator=g) * 100 * mask
    return recent * mask[..., None], mask, kind, age


def test_shapes_and_item_features_layout():
    m = model()
    text = torch.randn(5, CFG.text_dim)
    num = torch.zeros(5, CFG.num_dim)
    ids = torch.tensor([0, 1, 2, 0, 40])
    feats = m.items(text, ids, num)
    assert feats.shape == (5, CFG.feat_dim) == (5, CFG.d + 2)
    sl = tower_feat_slices(CFG.d)
    assert torch.allclose(feats[:, sl["v"]].norm(dim=-1), torch.ones(5), atol=1e-5)
    # id 0 = unknown item: text alone, zero biases (cold start)
    text_only = torch.nn.functional.normalize(m.items.text_proj(text[0]), dim=-1)
    assert torch.allclose(feats[0, sl["v"]], text_only, atol=1e-6)
    assert feats[0, CFG.d :].abs().max() == 0
    out = m.user(*user_batch(3, [6, 2, 4]))
    assert out.interests.shape == (3, CFG.k, CFG.d)
    assert out.weights.shape == (3, CFG.k) and out.attn.shape == (3, CFG.k, CFG.recent_len)
    assert torch.allclose(out.weights.sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.attn.sum(-1), torch.ones(3, CFG.k), atol=1e-5)
    heads = m.heads(out.interests, out.weights, torch.randn(3, 7, CFG.feat_dim), torch.rand(3, 7))
    assert heads.match.shape == (3, 7, CFG.k) and heads.p_click.shape == (3, 7)
    assert (heads.p_purchase <= heads.p_click + 1e-7).all()


def test_padding_changes_nothing_and_an_empty_history_is_finite():
    m = model()
    recent, mask, kind, age = user_batch(2, [3, 5])
    base = m.user(recent, mask, kind, age)
    # garbage in the padded positions changes nothing
    pad = (1 - mask).bool()
    noisy = m.user(
        torch.where(pad[..., None], torch.randn_like(recent) * 5, recent),
        mask,
        torch.where(pad, torch.ones_like(kind), kind),
        torch.where(pad, torch.full_like(age, 999.0), age),
    )
    for a, b in zip(base, noisy, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # a shorter L (the padding cut off) gives the same user
    short = m.user(recent[:1, :3], mask[:1, :3], kind[:1, :3], age[:1, :3])
    assert torch.allclose(short.interests, base.interests[:1], atol=1e-5)
    assert torch.allclose(short.weights, base.weights[:1], atol=1e-5)
    assert torch.allclose(short.attn, base.attn[:1, :, :3], atol=1e-5)
    assert base.attn[0, :, 3:].abs().max() == 0
    # no history at all: zero interests, uniform weights, zero attention, finite heads
    empty = m.user(*user_batch(2, [0, 0]))
    assert torch.isfinite(empty.interests).all() and empty.interests.abs().max() == 0
    assert torch.allclose(empty.weights, torch.full((2, CFG.k), 1.0 / CFG.k), atol=1e-6)
    assert empty.attn.abs().max() == 0
    heads = m.heads(empty.interests, empty.weights, torch.randn(2, 4, CFG.feat_dim), None)
    assert torch.isfinite(heads.p_click).all() and torch.isfinite(heads.p_purchase).all()


def test_interests_differ_for_a_user_with_two_item_groups():
    m = model(seed=3)
    d = CFG.d
    g = torch.Generator().manual_seed(1)
    a, b = torch.zeros(d), torch.zeros(d)
    a[0], b[1] = 1.0, 1.0
    items = torch.stack([a if i % 2 == 0 else b for i in range(CFG.recent_len)])
    items = torch.nn.functional.normalize(
        items + 0.05 * torch.randn(items.shape, generator=g), dim=-1
    )
    recent = torch.cat([items, torch.zeros(CFG.recent_len, 2)], -1)[None]
    mask = torch.ones(1, CFG.recent_len)
    kind = torch.zeros(1, CFG.recent_len, dtype=torch.long)
    out = m.user(recent, mask, kind, torch.zeros(1, CFG.recent_len))
    cos = out.interests[0] @ out.interests[0].T
    off = cos[~torch.eye(CFG.k, dtype=torch.bool)]
    assert off.max() < 0.999, f"interests collapsed: {cos}"
    assert len({tuple(row.round(decimals=3).tolist()) for row in out.attn[0]}) == CFG.k


def toy_world(n_ex: int, seed: int, n_items: int = CFG.n_items) -> tuple[ItemSpace, Examples]:
    """Two item groups (odd / even); the next item is the newest one's successor within its
    group: an order only a sequence model learns (popularity is flat)."""
    rng = np.random.default_rng(seed)
    vecs = np.random.default_rng(0).normal(size=(n_items + 1, CFG.text_dim)).astype(np.float32)
    vecs[0] = 0
    space = ItemSpace([f"i{j}" for j in range(n_items)], vecs, vecs)
    target = rng.integers(1, n_items + 1, n_ex)
    recent = np.zeros((n_ex, CFG.recent_len), np.int32)
    length = rng.integers(1, CFG.recent_len + 1, n_ex)
    for i in range(n_ex):
        prev = target[i]
        for pos in range(length[i]):
            prev = (prev - 3) % n_items + 1  # predecessor within the same parity group
            recent[i, pos] = prev
    age = np.where(recent > 0, np.arange(CFG.recent_len, dtype=np.float32)[None], 0).astype(
        np.float32
    )
    ex = Examples(
        np.zeros((n_ex, 1, CFG.text_dim), np.float16),
        np.zeros((n_ex, 1), np.float32),
        recent,
        target.astype(np.int32),
        (rng.random(n_ex) < 0.3).astype(np.uint8),
        np.arange(n_ex, dtype=np.int32),
        np.arange(n_ex, dtype=np.float64),
        [np.zeros(0, np.int32)] * n_ex,
        recent_kind=np.zeros(recent.shape, np.int8),
        recent_age=age,
    )
    return space, ex


def test_loss_goes_down_and_the_tower_beats_popularity():
    space, train = toy_world(800, 0)
    _, valid = toy_world(150, 1)
    _, test = toy_world(200, 2)
    opts = TrainingSettings(epochs=6, batch_size=64, negatives=16, patience=6, lr=1e-2, threads=1)
    res = train_tower(CFG, opts, space, train, valid)
    losses = [row.loss for row in res.history]
    assert losses[-1] < losses[0]
    pop = np.tile(popularity(train, space.n), (len(test), 1)).astype(np.float32)
    pop_ndcg = ranking_report(pop, test, (10,))["ndcg@10"]
    ours = evaluate(res.ranker, space, test, (10,))
    assert ours["ndcg@10"] > max(0.3, 2 * pop_ndcg), (ours, pop_ndcg)
    assert {"hr@10", "auc_click", "auc_purchase"} <= set(ours)


def test_early_stopping_stops():
    space, train = toy_world(200, 0)
    _, valid = toy_world(50, 1)
    # lr = 0: validation never improves after epoch 1 -> stops after 1 + patience epochs
    opts = TrainingSettings(epochs=10, batch_size=64, negatives=8, patience=2, lr=0.0, threads=1)
    res = train_tower(CFG, opts, space, train, valid)
    assert len(res.history) == 3 and res.stopped_early and res.best_epoch == 1


def test_buy_prior_is_the_smoothed_purchase_log_odds_and_moves_only_the_purchase_head():
    m = model()
    recent, mask, _, age = user_batch(3, [6, 4, 0])
    kind = torch.zeros_like(mask, dtype=torch.long)
    kind[0, :5] = 1  # 5 purchases, 1 click
    kind[1, :1] = 1  # 1 purchase, 3 clicks
    kind[2, :] = 1  # padding only: no history, whatever the kind says
    out = m.user(recent, mask, kind, age)
    want = torch.log(torch.tensor([6 / 2, 2 / 4, 1.0]))
    assert torch.allclose(out.buy_prior, want, atol=1e-6)
    cand = torch.randn(1, 5, CFG.feat_dim).expand(2, -1, -1)
    same = (out.interests[:1].expand(2, -1, -1), out.weights[:1].expand(2, -1))
    with torch.no_grad():
        m.heads.e.fill_(1.0)
    h = m.heads(*same, cand, None, torch.tensor([2.0, -2.0]))
    assert torch.allclose(h.click_logits[0], h.click_logits[1])  # click head: unchanged
    assert torch.allclose(h.cvr_logits[0] - h.cvr_logits[1], torch.full((5,), 4.0), atol=1e-5)
    # a model without the input (a version trained before it) ignores it and has no gain
    old = model(use_buy_prior=False)
    assert not hasattr(old.heads, "e")
    h_old = old.heads(*same, cand, None, torch.tensor([2.0, -2.0]))
    assert torch.allclose(h_old.cvr_logits[0], h_old.cvr_logits[1])


def test_an_old_config_loads_without_the_buy_prior():
    saved = {k: v for k, v in CFG.__dict__.items() if k != "use_buy_prior"}
    old = TowerConfig.from_dict(saved)
    assert old.use_buy_prior is False
    assert TowerConfig.from_dict(dict(CFG.__dict__)).use_buy_prior is True
    state = model(use_buy_prior=False).state_dict()
    TowerModel(old).load_state_dict(state)  # strict: the same parameters
    # a warm start of today's model from such a version: the new gain starts at its init
    from model_export.tower.checkpoint import with_new_params

    new = model(seed=5)
    filled = with_new_params(new, state)
    new.load_state_dict(filled)  # strict
    assert float(new.heads.e.detach()) == 0.5
    assert torch.equal(new.heads.a.detach(), state["heads.a"])


def test_the_purchase_head_learns_the_users_purchase_habit():
    """Buyers (80 % of their events purchases) and browsers (10 %): the purchase of the next
    event follows the habit, visible only in the kinds of the recent items."""

    def with_habit(seed: int, n: int) -> tuple[ItemSpace, Examples]:
        space, ex = toy_world(n, seed)
        rng = np.random.default_rng(seed + 100)
        rate = np.where(rng.random(n) < 0.5, 0.8, 0.1)
        ex.recent_kind = ((rng.random(ex.recent.shape) < rate[:, None]) & (ex.recent > 0)).astype(
            np.int8
        )
        ex.purchase = (rng.random(n) < rate).astype(np.uint8)
        return space, ex

    space, train = with_habit(0, 800)
    _, valid = with_habit(1, 150)
    _, test = with_habit(2, 300)
    opts = TrainingSettings(epochs=4, batch_size=64, negatives=16, patience=4, lr=1e-2, threads=1)
    res = train_tower(CFG, opts, space, train, valid)
    assert float(res.ranker.model.heads.e.detach()) > 0.5
    assert evaluate(res.ranker, space, test, (10,))["auc_purchase"] > 0.7
