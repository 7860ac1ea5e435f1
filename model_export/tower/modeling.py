"""Engine tower-v2, the model in one file: config, item encoder, multi-interest user tower
(ComiRec-SA family), light multi-task heads, and the ONNX export wrappers.

Item side (``ItemEncoder``, once per item):
    v        = normalize(W_t · text_vec + W_n · num + id_emb[id])     [d]  (id 0: text alone)
    bias     = id_bias[id, 0]                                         click prior (0 for id 0)
    buy_bias = id_bias[id, 1] + w_p · num                             purchase prior (price)
    feats    = [v | bias | buy_bias]                                  [d + 2]

User side (``UserTower``, over the last L items, newest first, 0 = padding):
    H = v(recent) + pos_emb[l] + kind_emb[click|purchase] + W_a · log1p(age hours)
    H = ``layers`` masked pre-norm self-attention blocks (``heads`` heads)
    A = masked softmax over l of W2 · tanh(W1 · H)          [B, K, L]  (rows sum to 1)
    interests = normalize(A · H)                            [B, K, d]
    weights = softmax_k(g · log(mass_k) + u · interest_k)   mass_k: share of the valid history
              whose item vector is closest to interest k (soft assignment), so an interest
              that explains more of the history weighs more
    buy_prior = log(n_purchase + 1) - log(n_click + 1)    the user's own purchase habit over
              the same L items (Laplace-smoothed log odds of a purchase; 0 without history)
An all-padding user gets zero attention rows, zero interests and uniform weights.

Heads (``Heads``, per candidate):
    match[b, n, k] = v_n · interest_k
    s  = logsumexp_k(tau · match + log weights)
    click = a · s + bias + c · log1p(10 · cooc) + b0;   p_click = sigmoid(click)
    cvr   = a2 · s + buy_bias + c2 · log1p(10 · cooc) + e · buy_prior + b1
    p_purchase = p_click · sigmoid(cvr)  (ESMM factorisation, as ranker-v1: p_purchase <= p_click)

Training (``model_export.tower.train``): next-item softmax over the whole catalogue with the
interest that best matches the target (ComiRec hard selection), plus the heads' BCE and
listwise terms on sampled negatives and the purchase BCE on each positive.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

NEG = -1e4  # additive mask (finite: an all-padding row stays finite)


@dataclass
class TowerConfig:
    text_dim: int = 384
    num_dim: int = 2
    d: int = 64
    k: int = 4
    recent_len: int = 20
    n_items: int = 0  # id vocabulary (index 0 = unknown item)
    layers: int = 1
    heads: int = 2
    dropout: float = 0.1
    use_ids: bool = True
    use_cooc: bool = True
    id_dropout: float = 0.1  # training: ids hidden per step (cold-start practice)
    temperature: float = 0.1  # initial softmax temperature over cos(interest, item)
    learn_temperature: bool = True
    retrieval_weight: float = 1.0
    listwise_weight: float = 1.0
    click_weight: float = 1.0
    purchase_weight: float = 0.5
    hard_negatives: bool = False  # heads: add the training settings' text-neighbour negatives
    # the purchase head reads the user's purchase share among the recent items (versions
    # trained before it existed load with False: their graphs have no buy_prior tensor)
    use_buy_prior: bool = True

    def __post_init__(self) -> None:
        if self.layers > 0 and self.d % self.heads:
            msg = f"tower config: d={self.d} must be a multiple of heads={self.heads}"
            raise ValueError(msg)

    @property
    def feat_dim(self) -> int:
        return self.d + 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TowerConfig:
        known = {f.name for f in fields(cls)}
        data = {"use_buy_prior": False, **data}  # a config saved before the field existed
        return cls(**{k: v for k, v in data.items() if k in known})


class ItemEncoder(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_proj = nn.Linear(cfg.text_dim, cfg.d)
        self.num_proj = nn.Linear(cfg.num_dim, cfg.d, bias=False)
        self.id_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.id_bias = nn.Embedding(cfg.n_items + 1, 2, padding_idx=0)
        self.price_buy = nn.Linear(cfg.num_dim, 1, bias=False)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        nn.init.zeros_(self.id_bias.weight)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()

    def forward(
        self, text_vec: torch.Tensor, id_index: torch.Tensor, item_num: torch.Tensor
    ) -> torch.Tensor:
        v = self.text_proj(text_vec) + self.num_proj(item_num)
        bias = self.id_bias(id_index)
        if self.cfg.use_ids:
            v = v + self.id_emb(id_index)
        else:
            bias = bias * 0.0
        v = F.normalize(v, dim=-1)
        buy = bias[..., 1:2] + self.price_buy(item_num)
        return torch.cat([v, bias[..., 0:1], buy], dim=-1)

    @torch.no_grad()
    def init_text_pca(self, text_vecs: torch.Tensor) -> None:
        """W_t = the top-d principal directions of the catalogue's text vectors: item vectors
        start close to the pretrained encoder's own geometry (cold items retrieve by text)."""
        x = text_vecs[text_vecs.norm(dim=-1) > 0]
        if x.shape[0] <= self.cfg.d or x.shape[1] < self.cfg.d:
            return
        mean = x.mean(0)
        _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
        w = v[: self.cfg.d]
        self.text_proj.weight.copy_(w)
        self.text_proj.bias.copy_(-(w @ mean))


class AttentionBlock(nn.Module):
    """Pre-norm masked multi-head self-attention + feed-forward (explicit ops: the ONNX
    export needs no fused kernel, and an all-padding row stays finite)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """h [B, L, d]; key_bias [B, L] (0 valid, NEG padding)."""
        b, n, d = h.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        q = q.reshape(b, n, self.heads, hd).transpose(1, 2)
        k = k.reshape(b, n, self.heads, hd).transpose(1, 2)
        v = v.reshape(b, n, self.heads, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + key_bias[:, None, None, :]
        att = self.drop(torch.softmax(att, dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, n, d)
        h = h + self.drop(self.out(y))
        return h + self.drop(self.ff(self.norm2(h)))


class UserOut(NamedTuple):
    interests: torch.Tensor  # [B, K, d] unit rows (zero for a user without history)
    weights: torch.Tensor  # [B, K] softmax over k
    attn: torch.Tensor  # [B, K, L] rows sum to 1 over valid items (0 without history)
    buy_prior: torch.Tensor  # [B] smoothed log odds of a purchase among the recent items


class UserTower(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        self.pos_emb = nn.Parameter(torch.zeros(cfg.recent_len, d))
        self.kind_emb = nn.Embedding(2, d)
        self.age_proj = nn.Linear(1, d)
        self.blocks = nn.ModuleList(
            [AttentionBlock(d, cfg.heads, cfg.dropout) for _ in range(cfg.layers)]
        )
        self.norm = nn.LayerNorm(d) if cfg.layers > 0 else nn.Identity()
        self.w1 = nn.Linear(d, 4 * d, bias=False)
        self.w2 = nn.Linear(4 * d, cfg.k, bias=False)
        self.mass_gain = nn.Parameter(torch.tensor(1.0))
        self.assign_scale = nn.Parameter(torch.tensor(10.0))
        self.weight_score = nn.Linear(d, 1)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.kind_emb.weight, std=0.02)
        nn.init.normal_(self.age_proj.weight, std=0.02)
        nn.init.zeros_(self.age_proj.bias)
        nn.init.zeros_(self.weight_score.weight)

    def forward(
        self,
        recent: torch.Tensor,  # [B, L, d+2] item feats, newest first
        recent_mask: torch.Tensor,  # [B, L] 1 = real item
        recent_kind: torch.Tensor,  # [B, L] int64 0 click, 1 purchase
        recent_age: torch.Tensor,  # [B, L] hours before the newest recent event
    ) -> UserOut:
        n = recent.shape[1]
        mask = recent_mask.to(recent.dtype)
        v = recent[..., : self.cfg.d] * mask[..., None]
        age = torch.log1p(recent_age.clamp_min(0.0))[..., None]
        h = v + self.pos_emb[:n] + self.kind_emb(recent_kind.clamp(0, 1)) + self.age_proj(age)
        h = self.drop(h)
        key_bias = (1.0 - mask) * NEG
        for block in self.blocks:
            h = block(h, key_bias)
        h = self.norm(h)
        logits = self.w2(torch.tanh(self.w1(h))).transpose(1, 2) + key_bias[:, None, :]
        attn = torch.softmax(logits, dim=-1) * mask[:, None, :]
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-9)  # 0 rows without history
        interests = F.normalize(torch.matmul(attn, h), dim=-1)  # [B, K, d]
        # mass_k: soft share of the valid history items closest to interest k
        sim = torch.matmul(v, interests.transpose(1, 2))  # [B, L, K]
        assign = torch.softmax(self.assign_scale * sim, dim=-1) * mask[..., None]
        n_valid = mask.sum(-1, keepdim=True).clamp_min(1.0)
        mass = assign.sum(1) / n_valid  # [B, K], sums to 1 (0 without history)
        score = self.mass_gain * torch.log(mass + 1e-4) + self.weight_score(interests).squeeze(-1)
        bought = (mask * (recent_kind == 1).to(mask.dtype)).sum(-1)
        buy_prior = torch.log1p(bought) - torch.log1p(mask.sum(-1) - bought)
        return UserOut(interests, torch.softmax(score, dim=-1), attn, buy_prior)


class HeadsOut(NamedTuple):
    click_logits: torch.Tensor  # [B, N]
    cvr_logits: torch.Tensor  # [B, N] purchase given an interaction
    match: torch.Tensor  # [B, N, K]

    @property
    def p_click(self) -> torch.Tensor:
        return torch.sigmoid(self.click_logits)

    @property
    def p_purchase(self) -> torch.Tensor:
        return torch.sigmoid(self.click_logits) * torch.sigmoid(self.cvr_logits)


class Heads(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tau = nn.Parameter(torch.tensor(1.0 / cfg.temperature))
        self.a = nn.Parameter(torch.tensor([1.0, 0.1]))  # click, purchase
        self.c = nn.Parameter(torch.tensor([1.0, 0.0]))
        self.b = nn.Parameter(torch.tensor([-3.0, -1.0]))
        if cfg.use_buy_prior:
            self.e = nn.Parameter(torch.tensor(0.5))

    def forward(
        self,
        interests: torch.Tensor,  # [B, K, d]
        weights: torch.Tensor,  # [B, K]
        cand: torch.Tensor,  # [B, N, d+2]
        cooc: torch.Tensor | None = None,  # [B, N]
        buy_prior: torch.Tensor | None = None,  # [B] (UserOut.buy_prior)
    ) -> HeadsOut:
        d = self.cfg.d
        match = torch.matmul(cand[..., :d], interests.transpose(1, 2))  # [B, N, K]
        s = torch.logsumexp(self.tau * match + torch.log(weights + 1e-9)[:, None, :], dim=-1)
        click = self.a[0] * s + cand[..., d] + self.b[0]
        cvr = self.a[1] * s + cand[..., d + 1] + self.b[1]
        if cooc is not None and self.cfg.use_cooc:
            cv = torch.log1p(10.0 * cooc.clamp_min(0.0))
            click = click + self.c[0] * cv
            cvr = cvr + self.c[1] * cv
        if buy_prior is not None and self.cfg.use_buy_prior:
            cvr = cvr + self.e * buy_prior[:, None]
        return HeadsOut(click, cvr, match)


class TowerModel(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg)
        self.user = UserTower(cfg)
        self.heads = Heads(cfg)
        self.log_temp = nn.Parameter(
            torch.tensor(math.log(cfg.temperature)), requires_grad=cfg.learn_temperature
        )

    def retrieval_scale(self) -> torch.Tensor:
        """1 / temperature of the next-item softmax (temperature kept within [0.02, 1])."""
        return torch.exp(-self.log_temp.clamp(math.log(0.02), 0.0))


class ItemTowerExport(nn.Module):
    def __init__(self, items: ItemEncoder) -> None:
        super().__init__()
        self.items = items

    def forward(self, text_vec, id_index, item_num):  # type: ignore[no-untyped-def]
        return (self.items(text_vec, id_index, item_num),)


class UserTowerExport(nn.Module):
    def __init__(self, user: UserTower) -> None:
        super().__init__()
        self.user = user

    def forward(self, recent, recent_mask, recent_kind, recent_age):  # type: ignore[no-untyped-def]
        out = self.user(recent, recent_mask, recent_kind, recent_age)
        if self.user.cfg.use_buy_prior:
            return out.interests, out.weights, out.attn, out.buy_prior
        return out.interests, out.weights, out.attn


class HeadsExport(nn.Module):
    def __init__(self, heads: Heads) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, interests, weights, cand, cooc, buy_prior=None):  # type: ignore[no-untyped-def]
        out = self.heads(interests, weights, cand, cooc, buy_prior)
        return out.p_click, out.p_purchase, out.match
