"""A deterministic numpy model for the fast unit tier (no tests here): ``FakeScorer``
implements the core's ``Scorer`` protocol, so the engine, the worker's batch processing and
the replay protocols run without ONNX Runtime, torch or a registry. Real graphs are tested
against the same code elsewhere (the contract tests on a tiny exported model).

The fake is simple enough to reason about in a test:

- an item's text vector is its category's direction plus a small id-seeded wobble (items of
  one category are near each other, categories are orthogonal);
- retrieval vectors ARE the text vectors (``d == text_dim``): an interest slot retrieves its
  own category first; the newest item retrieves its neighbours;
- p_click = sigmoid(GAIN * best match of the candidate with an active slot + its bias):
  candidates of the user's strongest categories score highest; p_purchase = p_click * 0.3
  unless the item id ends in ``"b"`` (a "bought" item: * 0.9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream_app.core.catalogue import ItemStore
from stream_app.core.covisit import CoVisit
from stream_app.core.engine import Bundle, Recommender
from stream_app.core.interests import InterestParams
from stream_app.core.scorer import RankerOut, TowerOut

TEXT_DIM = 8
GAIN = 6.0


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def text_vector(item_id: str, category: str, categories: Sequence[str]) -> np.ndarray:
    """Unit vector: the category's axis plus a wobble of 0.15 seeded by the item id."""
    base = np.zeros(TEXT_DIM, np.float32)
    base[categories.index(category) % TEXT_DIM] = 1.0
    wobble = np.random.default_rng(_seed(item_id)).standard_normal(TEXT_DIM).astype(np.float32)
    v = base + 0.15 * wobble / np.linalg.norm(wobble)
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass
class FakeScorer:
    """Implements ``stream_app.core.scorer.Scorer`` (structurally) with plain numpy."""

    known: Sequence[str] = ()  # items "trained on" (id index 1..M); others are new items
    version: str = "v-fake"
    space: str = "fake-space"
    k: int = 4
    recent_len: int = 5
    covisit: CoVisit | None = None
    calls: list[int] = field(default_factory=list)  # batch size of every score() call

    @property
    def d(self) -> int:
        return TEXT_DIM

    @property
    def text_dim(self) -> int:
        return TEXT_DIM

    @property
    def feat_dim(self) -> int:
        return TEXT_DIM + 2  # [text | click bias | buy bias]

    @property
    def id_index(self) -> Mapping[str, int]:
        return {item: i + 1 for i, item in enumerate(self.known)}

    def item_features(self, text: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """[N, F]: the text vector, a click bias (0.1 for known items, 0 for new ones) and a
        buy bias (high for ids ending in ``b``)."""
        feats = np.zeros((len(item_ids), self.feat_dim), np.float32)
        feats[:, :TEXT_DIM] = text
        index = self.id_index
        feats[:, TEXT_DIM] = [0.1 if i in index else 0.0 for i in item_ids]
        feats[:, TEXT_DIM + 1] = [0.9 if i.endswith("b") else 0.3 for i in item_ids]
        return feats

    def tower(
        self,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        recent_kind: np.ndarray,
        recent_age: np.ndarray,
    ) -> TowerOut | None:
        return None  # rule-built slots (ranker-v1); ``FakeTower`` has a learned-style tower

    def queries(
        self, slots: np.ndarray, strengths: np.ndarray, newest: np.ndarray, newest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.concatenate([slots, newest[:, None, :TEXT_DIM]], axis=1).astype(np.float32)
        valid = np.concatenate([strengths > 0, newest_valid[:, None]], axis=1)
        return q, valid

    def slot_match(self, slots: np.ndarray, cand_feats: np.ndarray) -> np.ndarray | None:
        return np.matmul(cand_feats[..., :TEXT_DIM], slots.transpose(0, 2, 1))

    def score(
        self,
        slots: np.ndarray,
        strengths: np.ndarray,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        cand: np.ndarray,
        cooc: np.ndarray | None = None,
        buy_prior: np.ndarray | None = None,
    ) -> RankerOut:
        self.calls.append(int(slots.shape[0]))
        cand = np.broadcast_to(cand, (slots.shape[0], *cand.shape[1:]))
        match = np.matmul(cand[..., :TEXT_DIM], slots.transpose(0, 2, 1))  # [B, N, K]
        match = np.where((strengths > 0)[:, None, :], match, -1.0)
        logit = GAIN * match.max(2) + cand[..., TEXT_DIM]
        if cooc is not None:
            logit = logit + cooc
        p_click = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        p_buy = (p_click * cand[..., TEXT_DIM + 1]).astype(np.float32)
        rec_sim = np.matmul(cand[..., :TEXT_DIM], recent[..., :TEXT_DIM].transpose(0, 2, 1))
        rec_sim = np.where(recent_mask[:, None, :] > 0, rec_sim, -np.inf)
        scores = np.concatenate([np.where(np.isfinite(match), match, -1.0), rec_sim], axis=2)
        attn = np.exp(scores - scores.max(2, keepdims=True))
        attn = (attn / attn.sum(2, keepdims=True)).astype(np.float32)
        return RankerOut(p_click, p_buy, attn)


@dataclass
class FakeTower(FakeScorer):
    """A deterministic stand-in for the learned user tower (engine tower-v2): the recent
    items are grouped by their category axis; the K biggest groups (ties: the newest first)
    are the interests (unit mean of the group's vectors), weights = the group's share of the
    recent items, attention = uniform over the group's items. Records its last inputs."""

    last: dict[str, np.ndarray] = field(default_factory=dict)

    def tower(
        self,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        recent_kind: np.ndarray,
        recent_age: np.ndarray,
    ) -> TowerOut | None:
        self.last = {"mask": recent_mask, "kind": recent_kind, "age": recent_age}
        b, n_rec = recent_mask.shape
        v = recent[..., :TEXT_DIM]
        interests = np.zeros((b, self.k, TEXT_DIM), np.float32)
        weights = np.zeros((b, self.k), np.float32)
        attn = np.zeros((b, self.k, n_rec), np.float32)
        for i in range(b):
            valid = np.flatnonzero(recent_mask[i] > 0)
            groups: dict[int, list[int]] = {}
            for pos in valid.tolist():  # newest first
                groups.setdefault(int(np.argmax(v[i, pos])), []).append(pos)
            ranked = sorted(groups.values(), key=lambda g: (-len(g), g[0]))[: self.k]
            for kk, members in enumerate(ranked):
                mean = v[i, members].mean(0)
                interests[i, kk] = mean / np.linalg.norm(mean)
                weights[i, kk] = len(members) / max(1, len(valid))
                attn[i, kk, members] = 1.0 / len(members)
        return TowerOut(interests, weights, attn)


@dataclass(frozen=True)
class FakeItem:
    item_id: str
    category: str
    added_ts: float = 0.0


def catalogue(categories: Sequence[str], per_category: int, prefix: str = "") -> list[FakeItem]:
    """``per_category`` items per category: ids ``<prefix><category>-<n>``."""
    return [FakeItem(f"{prefix}{c}-{n}", c) for c in categories for n in range(per_category)]


def fake_store(
    model: FakeScorer, items: Iterable[FakeItem], categories: Sequence[str]
) -> ItemStore:
    items = list(items)
    store = ItemStore(model.text_dim, model.feat_dim, capacity=max(16, len(items)))
    if items:
        text = np.stack([text_vector(it.item_id, it.category, categories) for it in items])
        ids = [it.item_id for it in items]
        store.upsert(
            ids,
            text,
            model.item_features(text, ids),
            [(it.category,) for it in items],
            [it.added_ts for it in items],
        )
    return store


def fake_recommender(
    items: Sequence[FakeItem],
    categories: Sequence[str],
    known: Sequence[str] | None = None,
    k: int = 4,
    tower: bool = False,
    **serving: object,
) -> Recommender[FakeScorer]:
    """A ``Recommender`` over the fake model (``tower``: the fake learned tower, engine
    tower-v2); ``known`` defaults to every item; ``serving`` overrides ``ServingSettings``
    fields (``top_k=5``)."""
    from schemas.settings import ServingSettings

    cls = FakeTower if tower else FakeScorer
    model = cls(known=[it.item_id for it in items] if known is None else known, k=k)
    params = InterestParams(k=k, recent=20)
    return Recommender(
        Bundle(model, fake_store(model, items, categories)),
        params,
        ServingSettings(**serving),  # type: ignore[arg-type]
    )


def fake_loaded_model(cat: Any, k: int = 4) -> Any:
    """A ``replay.catalogue.LoadedModel`` over a replay ``Catalogue`` with the fake model
    (every catalogue item known; text vectors by each item's first category)."""
    from stream_app.replay.catalogue import LoadedModel

    cats = [c[0] if c else "none" for c in cat.categories]
    names = sorted(set(cats))
    text = np.stack([text_vector(i, c, names) for i, c in zip(cat.ids, cats, strict=True)])
    model = FakeScorer(known=list(cat.ids), k=k)
    return LoadedModel(model, InterestParams(k=k), text, model.item_features(text, cat.ids))
