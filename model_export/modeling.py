"""The model, in one file: config, pretrained text encoder wrapper, item tower, multi-task ranker.

Item side (``ItemTower``, run once per item when it enters the catalogue):
    r    = LayerNorm(W_t · text_vec + id_emb[id] + W_n · num)   item representation [d]
           (num = log1p(price), has_price)
    q    = W_q · r                                        its attention query  [d]
    c    = W_c · r                                        its share of the first layer [H]
    t    = normalize(P · text_vec)                        its content vector (P: PCA-initialised)
    bias = b_id[id] + W_b · text_vec + W_n · num         item priors [2]: click (popularity),
                                                          buy given click (quality, price)
    feats = [r | q | c | t | bias | buy_bias]             [F = 3d + H + 2]
Unseen items (id 0) use text alone; ``use_text`` / ``use_ids`` switch each source off for
ablations. During training, ids are hidden with probability ``id_dropout`` (and with them the
item's co-visitation input, as at serving time for a new item) so the text path
learns to stand on its own (cold start).

User side (``MultiTaskRanker``, per event): K interest slots in the pretrained text space,
their strengths, the last L items' feats. Slots are projected to d; slots and recent items
form a memory; each candidate attends over it with its precomputed query (target attention,
strength prior on slots). Shared bottom: h = GELU(A·(u ⊙ r) + attn·(V·B) + c + b0); heads in a
ModuleDict: ``click`` gives p_click; ``purchase`` is a conversion tower, p_purchase =
p_click · p(buy | click) (ESMM's factorisation), so p_purchase <= p_click by construction.
The conversion tower learns on the items users did interact with (each example's positive:
bought or only clicked), not through the product over sampled negatives as in ESMM: with
hard negatives (items much like the positive, label 0) the product taught the tower that
items matching the user's interests are bought LESS (purchase AUC 0.46 on the synthetic
shop; see ``purchase_loss``).

Three explicit terms make the baselines special cases of the model: a content match (max over
active slots of cos(P·slot, t), i.e. the pretrained LM used zero-shot), an item-to-item term
(max over recent items of (W·r_recent)·r, an item-kNN learned from ids and text) and the
co-visitation score of the candidate with the user's last items (an input computed from the
training log's co-occurrence table, ``stream_app.core.covisit``), log-compressed.

Per candidate the work is a few [M×d] dot products, one [d×H] matmul and the small heads;
all per-item projections are precomputed, which keeps ~200 candidates under a millisecond.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from schemas import onnx_spec


@dataclass
class RankerConfig:
    text_dim: int = 384
    num_dim: int = 2
    d: int = 64
    hidden: int = 64
    k: int = 4
    recent_len: int = 20
    n_items: int = 0  # size of the id vocabulary (index 0 = unknown item)
    use_text: bool = True
    use_ids: bool = True
    use_cooc: bool = True
    dropout: float = 0.1
    id_dropout: float = 0.1
    tasks: tuple[str, ...] = ("click", "purchase")
    task_weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0, "purchase": 0.5})
    listwise_weight: float = 1.0  # sampled-softmax term on click logits (ranking quality)
    retrieval_weight: float = 0.5  # sampled-softmax term training the retrieval queries
    # "clicked": p(buy | click) by BCE on each example's positive (interacted items);
    # "esmm": BCE of p_click * p(buy | click) over every candidate
    purchase_loss: str = "clicked"

    @property
    def feat_dim(self) -> int:
        return 3 * self.d + self.hidden + 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> RankerConfig:
        data = dict(data)
        data["tasks"] = tuple(data.get("tasks", ("click", "purchase")))
        return cls(**data)


def feat_slices(cfg: RankerConfig) -> dict[str, slice]:
    return onnx_spec.feat_slices(cfg.d, cfg.hidden)


class ItemTower(nn.Module):
    def __init__(self, cfg: RankerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_proj = nn.Linear(cfg.text_dim, cfg.d)
        # row 0 is a learned "item unknown to this model" embedding and bias: training hides ids
        # (id_dropout, in the training loop) so that row learns how new items behave
        self.id_emb = nn.Embedding(cfg.n_items + 1, cfg.d)
        self.id_bias = nn.Embedding(cfg.n_items + 1, 2)
        self.text_bias = nn.Linear(cfg.text_dim, 2)
        self.num_bias = nn.Linear(cfg.num_dim, 2)
        self.num_proj = nn.Linear(cfg.num_dim, cfg.d)
        self.norm = nn.LayerNorm(cfg.d)
        self.q = nn.Linear(cfg.d, cfg.d, bias=False)
        self.c = nn.Linear(cfg.d, cfg.hidden, bias=False)
        self.content = nn.Linear(cfg.text_dim, cfg.d, bias=False)  # P; see init_content_pca
        nn.init.normal_(self.id_emb.weight, std=0.02)
        nn.init.zeros_(self.id_bias.weight)

    def forward(
        self, text_vec: torch.Tensor, id_index: torch.Tensor, item_num: torch.Tensor
    ) -> torch.Tensor:
        cfg = self.cfg
        r = torch.zeros(*id_index.shape, cfg.d, device=id_index.device, dtype=text_vec.dtype)
        bias = self.num_bias(item_num)
        if cfg.use_text:
            r = r + self.text_proj(text_vec)
            bias = bias + self.text_bias(text_vec)
        if cfg.use_ids:
            r = r + self.id_emb(id_index)
            bias = bias + self.id_bias(id_index)
        r = self.norm(r + self.num_proj(item_num))
        t = F.normalize(self.content(text_vec), dim=-1)
        return torch.cat([r, self.q(r), self.c(r), t, bias], dim=-1)

    @torch.no_grad()
    def init_content_pca(self, text_vecs: torch.Tensor) -> None:
        """P = the top-d principal directions of the catalogue's text vectors, so cosine in the
        projected space starts close to the pretrained encoder's own cosine (zero-shot)."""
        x = text_vecs[text_vecs.norm(dim=-1) > 0]
        if x.shape[0] <= self.cfg.d:
            return
        _, _, v = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        self.content.weight.copy_(v[: self.cfg.d])


class RankerOutput(NamedTuple):
    click_logits: torch.Tensor  # [B, N]
    cvr_logits: torch.Tensor  # [B, N] purchase given click
    retrieval_logits: torch.Tensor  # [B, N] max over the user's retrieval queries
    attn: torch.Tensor | None = None  # [B, N, K + L] attention over slots then recent items
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None

    @property
    def p_click(self) -> torch.Tensor:
        return torch.sigmoid(self.click_logits)

    @property
    def p_purchase(self) -> torch.Tensor:
        return torch.sigmoid(self.click_logits) * torch.sigmoid(self.cvr_logits)


def _tower(hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden // 2, 1)
    )


class MultiTaskRanker(nn.Module):
    def __init__(self, cfg: RankerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, h = cfg.d, cfg.hidden
        self.items = ItemTower(cfg)
        self.slot_proj = nn.Linear(cfg.text_dim, d)
        self.pos_emb = nn.Parameter(torch.zeros(cfg.recent_len, d))
        self.kind_emb = nn.Parameter(torch.zeros(2, d))  # 0 = slot, 1 = recent item
        self.slot_prior = nn.Parameter(torch.tensor(1.0))
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.a_x = nn.Linear(d, h)
        self.a_u = nn.Linear(d, h, bias=False)
        self.dot_scale = nn.Parameter(torch.tensor(1.0))
        self.content_scale = nn.Parameter(torch.tensor(5.0))
        self.i2i = nn.Linear(d, d, bias=False)
        self.i2i_pos = nn.Parameter(torch.zeros(cfg.recent_len))
        self.i2i_scale = nn.Parameter(torch.tensor(1.0))
        self.cooc_w = nn.Parameter(torch.tensor(1.0))
        self.cooc_v = nn.Parameter(torch.zeros(h))
        self.drop = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({name: _tower(h, cfg.dropout) for name in cfg.tasks})
        nn.init.normal_(self.pos_emb, std=0.02)

    # -- user side -------------------------------------------------------------------
    def retrieval_queries(
        self,
        slots: torch.Tensor,
        strengths: torch.Tensor,
        recent: torch.Tensor,
        recent_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, K+1, d] queries (projected slots, newest recent item) and their validity."""
        r = feat_slices(self.cfg)["r"]
        q_slots = self.slot_proj(slots)
        q_recent = recent[:, :1, r]
        queries = torch.cat([q_slots, q_recent], dim=1)
        valid = torch.cat([strengths > 0, recent_mask[:, :1] > 0], dim=1)
        return queries, valid

    def forward(
        self,
        slots: torch.Tensor,  # [B, K, Dt]
        strengths: torch.Tensor,  # [B, K]
        recent: torch.Tensor,  # [B, L, F] item feats, newest first
        recent_mask: torch.Tensor,  # [B, L] 1 = real item
        cand: torch.Tensor,  # [B, N, F] item feats
        cooc: torch.Tensor | None = None,  # [B, N] co-visitation score with the recent items
        labels: dict[str, torch.Tensor] | None = None,  # click/purchase [B, N] in {0, 1}
        cand_valid: torch.Tensor | None = None,  # [B, N] bool: False = ignore in the loss
    ) -> RankerOutput:
        cfg = self.cfg
        sl = feat_slices(cfg)
        b, k = strengths.shape
        n_rec = recent.shape[1]
        mem = torch.cat(
            [
                self.slot_proj(slots) + self.kind_emb[0],
                recent[..., sl["r"]] + self.pos_emb[:n_rec] + self.kind_emb[1],
            ],
            dim=1,
        )  # [B, M, d]
        mem_valid = torch.cat([strengths > 0, recent_mask > 0], dim=1)  # [B, M]
        share = strengths / strengths.sum(-1, keepdim=True).clamp_min(1e-6)
        prior = torch.cat(
            [self.slot_prior * torch.log(share.clamp_min(1e-4)), torch.zeros_like(recent_mask)], 1
        )
        keys_t = self.key(mem).transpose(1, 2)  # [B, d, M]
        vals = self.value(mem)  # [B, M, d]
        vals_h = self.a_u(vals)  # [B, M, H]  per user, shared by all candidates
        # cand may be [B, N, F] or [1, N, F] (candidates shared by the batch): matmuls broadcast
        q = cand[..., sl["q"]]
        # masks as per-user additive biases (one [B, 1, M] add instead of a [B, N, M] select)
        mem_bias = prior + (~mem_valid).float() * -1e4
        att = torch.matmul(q, keys_t) / math.sqrt(cfg.d) + mem_bias[:, None, :]
        attn = torch.softmax(att, dim=-1)  # [B, N, M]
        u = torch.matmul(attn, vals)  # [B, N, d]
        r_c = cand[..., sl["r"]]
        ur = u * r_c
        pre = self.a_x(ur) + torch.matmul(attn, vals_h) + cand[..., sl["c"]]
        cv = torch.log1p(10.0 * cooc.clamp_min(0)) if cooc is not None else None
        if cv is not None:
            pre = pre + cv[..., None] * self.cooc_v
        hidden = F.gelu(pre)
        hidden = self.drop(hidden)
        dot = self.dot_scale * ur.sum(-1) / math.sqrt(cfg.d)
        # content match: max over active slots of cos(P·slot, t_c) (the LM, zero-shot)
        slot_t = F.normalize(self.items.content(slots), dim=-1)  # [B, K, d]
        content = torch.matmul(cand[..., sl["t"]], slot_t.transpose(1, 2))  # [B, N, K]
        content = (content + (strengths <= 0).float()[:, None, :] * -2.0).max(-1).values
        # item-to-item: max over recent items of (W·r_recent)·r_c + a position bias
        rec_q = self.i2i(recent[..., sl["r"]]).transpose(1, 2)  # [B, d, L]
        i2i = torch.matmul(r_c, rec_q) / math.sqrt(cfg.d) + self.i2i_pos[:n_rec]
        i2i = (i2i + (recent_mask <= 0).float()[:, None, :] * -1e4).max(-1).values
        i2i = torch.where(recent_mask.sum(-1, keepdim=True) > 0, i2i, torch.zeros_like(i2i))
        click = (
            self.heads["click"](hidden).squeeze(-1)
            + dot
            + cand[..., sl["bias"]].squeeze(-1)
            + self.content_scale * content
            + self.i2i_scale * i2i
        )
        if cv is not None:
            click = click + self.cooc_w * cv
        cvr = self.heads["purchase"](hidden).squeeze(-1) + cand[..., sl["buy_bias"]].squeeze(-1)
        queries, q_valid = self.retrieval_queries(slots, strengths, recent, recent_mask)
        ret = torch.matmul(r_c, queries.transpose(1, 2)) + (~q_valid).float()[:, None, :] * -1e4
        ret = ret.max(-1).values
        out = RankerOutput(click, cvr, ret, attn)
        if labels is None:
            return out
        loss, parts = self.loss(out, labels, cand_valid)
        return out._replace(loss=loss, losses=parts)

    def loss(
        self, out: RankerOutput, labels: dict[str, torch.Tensor], valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of the task losses (+ listwise and retrieval terms).

        Listwise terms assume the positive is candidate 0 of each row (how batches are built).
        """
        cfg = self.cfg
        y_click = labels["click"].float()
        y_buy = labels["purchase"].float()
        if valid is None:
            valid = torch.ones_like(y_click, dtype=torch.bool)
        w = valid.float()
        denom = w.sum().clamp_min(1.0)
        parts: dict[str, torch.Tensor] = {}
        bce = F.binary_cross_entropy_with_logits(out.click_logits, y_click, reduction="none")
        parts["click"] = (bce * w).sum() / denom
        if cfg.purchase_loss == "esmm":
            # log p_purchase = logsig(click) + logsig(cvr); log(1 - p) computed stably
            log_p = F.logsigmoid(out.click_logits) + F.logsigmoid(out.cvr_logits)
            log_not_p = torch.log(-torch.expm1(log_p.clamp(max=-1e-6)))
            parts["purchase"] = (-(y_buy * log_p + (1 - y_buy) * log_not_p) * w).sum() / denom
        else:  # the positive (candidate 0) of each row: bought, or only clicked
            parts["purchase"] = F.binary_cross_entropy_with_logits(
                out.cvr_logits[:, 0], y_buy[:, 0]
            )
        loss = torch.stack([cfg.task_weights.get(t, 1.0) * parts[t] for t in cfg.tasks]).sum()
        if cfg.listwise_weight > 0:
            logits = out.click_logits.masked_fill(~valid, -1e4)
            parts["listwise"] = F.cross_entropy(logits, torch.zeros_like(logits[:, 0]).long())
            loss = loss + cfg.listwise_weight * parts["listwise"]
        if cfg.retrieval_weight > 0:
            logits = out.retrieval_logits.masked_fill(~valid, -1e4)
            parts["retrieval"] = F.cross_entropy(logits, torch.zeros_like(logits[:, 0]).long())
            loss = loss + cfg.retrieval_weight * parts["retrieval"]
        return loss, parts


class RankerExport(nn.Module):
    """ONNX wrapper: fixed tuple of tensors out, no labels, no mode flags."""

    def __init__(self, model: MultiTaskRanker) -> None:
        super().__init__()
        self.model = model

    def forward(self, slots, strengths, recent, recent_mask, cand, cooc):  # type: ignore[no-untyped-def]
        out = self.model(slots, strengths, recent, recent_mask, cand, cooc)
        return out.p_click, out.p_purchase, out.attn


class ItemTowerExport(nn.Module):
    def __init__(self, tower: ItemTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, text_vec, id_index, item_num):  # type: ignore[no-untyped-def]
        return (self.tower(text_vec, id_index, item_num),)
