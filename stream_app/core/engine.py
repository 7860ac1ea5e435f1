"""The per-event core shared by the worker and replay: apply an event to a user's state, then
(batched over events) retrieve candidates per interest slot, score them with the ONNX
ranker, and pick a diversified top-K with the interest slot and the reasons filled in.

``Bundle`` is what a model swap replaces in one reference change: model + catalogue store +
retriever always come from the same version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream_app.core.catalog import ItemStore
from stream_app.core.diversify import mmr_select, slot_quotas
from stream_app.core.interests import (
    PURCHASE,
    EventLite,
    InterestParams,
    InterestState,
    new_state,
    update_interests,
)
from stream_app.core.retrieval import ExactRetriever, Retriever, union_candidates
from stream_app.core.serving import ServingModel

EXPLORE_FRESH_S = 7 * 24 * 3600.0


class UnknownItem(KeyError):
    """The event's item is not in the catalogue (yet)."""

    reason = "unknown_item"

    def __str__(self) -> str:
        return f"event.item_id: expected an item in the catalogue, got {self.args[0]!r}"


@dataclass(frozen=True)
class Rec:
    item_id: str
    score: float
    p_click: float
    p_purchase: float
    interest: int
    because: list[str]


@dataclass
class EngineOptions:
    top_k: int = 10
    candidates: int = 200
    explore: int = 2
    mmr_lambda: float = 0.8
    purchase_blend: float = 0.3
    diversify: bool = True
    exclude_recent: int = 1  # the newest items (the trigger) are not recommended back

    @classmethod
    def from_settings(cls, s: object) -> EngineOptions:
        return cls(top_k=s.top_k, candidates=s.candidates, explore=s.explore,  # type: ignore[attr-defined]
                   mmr_lambda=s.mmr_lambda, purchase_blend=s.purchase_blend)  # type: ignore[attr-defined]  # fmt: skip


@dataclass
class Bundle:
    model: ServingModel
    store: ItemStore
    retriever: Retriever = field(init=False)

    def __post_init__(self) -> None:
        self.retriever = ExactRetriever(self.store, self.model.d)


class Recommender:
    def __init__(self, bundle: Bundle, params: InterestParams, opts: EngineOptions) -> None:
        if bundle.model.k != params.k:
            msg = (f"interests.k: the model {bundle.model.version} was trained with k="
                   f"{bundle.model.k}, got k={params.k} in the settings")  # fmt: skip
            raise ValueError(msg)
        self.bundle, self.params, self.opts = bundle, params, opts

    # -- state -------------------------------------------------------------------------
    def new_state(self) -> InterestState:
        return new_state(self.params.k, self.bundle.model.text_dim, self.bundle.model.space)

    def apply(self, state: InterestState | None, ev: EventLite) -> InterestState:
        """State after the event; raises UnknownItem. Same object back on a duplicate id."""
        store = self.bundle.store
        row = store.row.get(ev.item_id)
        if row is None:
            raise UnknownItem(ev.item_id)
        state = state if state is not None else self.new_state()
        new = update_interests(state, store.text[row], ev, self.params)
        if new is not state:
            store.bump(row, ev.ts, self.params.purchase_weight if ev.kind == PURCHASE else 1.0)
        return new

    # -- recommendations ---------------------------------------------------------------
    def recommend(self, states: list[InterestState], now: float) -> list[list[Rec]]:
        if not states:
            return []
        b = self.bundle
        model, store, opts = b.model, b.store, self.opts
        k, n_rec = model.k, model.recent_len
        slots = np.stack([s.slots for s in states]).astype(np.float32)
        strengths = np.stack([s.strength for s in states]).astype(np.float32)
        rec_rows = np.full((len(states), n_rec), -1, np.int64)
        for i, s in enumerate(states):
            ids = s.recent_items[::-1][:n_rec]
            rec_rows[i, : len(ids)] = store.rows_for(ids)
        rec_mask = (rec_rows >= 0).astype(np.float32)
        recent = store.feats[np.maximum(rec_rows, 0)] * rec_mask[..., None]
        queries, valid = model.queries(slots, strengths, recent[:, 0], rec_mask[:, 0] > 0)
        per_q = max(1, -(-opts.candidates // (k + 1)) + 4)
        found = b.retriever.search(queries.reshape(-1, model.d), valid.reshape(-1), per_q)
        found = found.reshape(len(states), k + 1, per_q)
        explore = self._explore_rows(now)
        cands, extra_from = [], []
        for i, s in enumerate(states):
            exclude = set(store.rows_for(s.purchased).tolist())
            exclude.update(rec_rows[i, : opts.exclude_recent].tolist())
            rows = union_candidates(found[i], opts.candidates, exclude)
            extra = union_candidates(explore[None, :], opts.explore * 3, exclude | set(rows.tolist()))
            extra_from.append(len(rows))
            cands.append(np.concatenate([rows, extra]))
        width = max(1, max(len(c) for c in cands))
        cand_rows = np.zeros((len(states), width), np.int64)
        for i, c in enumerate(cands):
            cand_rows[i, : len(c)] = c
        out = model.score(slots, strengths, recent.astype(np.float32), rec_mask,
                          store.feats[cand_rows])  # fmt: skip
        score = (1 - opts.purchase_blend) * out.p_click + opts.purchase_blend * out.p_purchase
        return [self._pick(states[i], cands[i], extra_from[i], score[i], out, i, rec_rows[i])
                for i in range(len(states))]  # fmt: skip

    def _explore_rows(self, now: float) -> np.ndarray:
        store, n = self.bundle.store, self.opts.explore * 3
        if n == 0:
            return np.zeros(0, np.int64)
        fresh = store.popular(n, fresh_since=now - EXPLORE_FRESH_S)
        return fresh if len(fresh) >= n else np.concatenate([fresh, store.popular(n)])

    def _pick(self, state: InterestState, rows: np.ndarray, n_retrieved: int, score: np.ndarray,
              out: object, i: int, rec_rows: np.ndarray) -> list[Rec]:  # fmt: skip
        c = len(rows)
        if c == 0:
            return []
        model, store, opts = self.bundle.model, self.bundle.store, self.opts
        k = model.k
        attn = out.attn[i, :c]  # type: ignore[attr-defined]
        slot_att = np.where(state.strength[None, :] > 0, attn[:, :k], -1.0)
        slot = np.where(slot_att.max(1) > 0, slot_att.argmax(1), -1)
        slot[n_retrieved:] = -1  # exploration picks
        s = score[:c]
        if opts.diversify:
            quotas = slot_quotas(state.strength, opts.top_k)
            order = mmr_select(s, store.text[rows], slot, quotas, opts.top_k, opts.mmr_lambda,
                               explore_max=opts.explore)  # fmt: skip
        else:
            order = list(np.argsort(-s, kind="stable")[: opts.top_k])
        recs = []
        for j in order:
            weights = attn[j, k:]
            because = [] if slot[j] < 0 else [store.ids[rec_rows[p]] for p in np.argsort(-weights)[:3]
                       if weights[p] > 0.05 and rec_rows[p] >= 0]  # fmt: skip
            if not because and slot[j] >= 0:
                because = state.because(int(slot[j]), 2)
            recs.append(Rec(store.id_of(int(rows[j])), float(s[j]),
                            float(out.p_click[i, j]), float(out.p_purchase[i, j]),  # type: ignore[attr-defined]
                            int(slot[j]), [x for x in because if x is not None]))  # fmt: skip
        return recs
