"""Our model (and its ablations) in replay: the worker's own ``Recommender`` over a ``Feed``-filled
store, plus the two things replay needs beyond the lists it publishes:

- ``CapturingRecommender`` keeps each batch's ``Recommender.score_batch`` result (candidate
  rows, blended scores, slots, ranker outputs), so other list-selection settings (no
  diversification, other MMR lambdas) re-select with ``Recommender.select`` from the SAME
  retrieval and scores, without another ranker call;
- ``score_rows`` runs the version's ranker on given items for given states (the target's
  p_click / p_purchase, full-catalogue LOO ranking) with the inputs built as the engine does.

``EngineStream`` is one model version in the ``stream`` protocol: it applies events through
``Recommender.apply`` and returns, per event, the list that was current before it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from schemas.settings import ServingSettings
from stream_app.core.engine import (
    Bundle,
    Rec,
    Recommender,
    Scored,
    UnknownItem,
    UserInputs,
    user_inputs,
)
from stream_app.core.interests import EventLite, InterestState
from stream_app.core.scorer import RankerOut
from stream_app.replay.catalogue import Catalogue, Feed
from stream_app.replay.results import share_below


class ReplayEvent(NamedTuple):
    lite: EventLite
    user: str
    item: int  # catalogue index (-1: not in the catalogue)
    purchase: bool


class Outcome(NamedTuple):
    """One system's answer for one scored event (see ``results.SystemResults``)."""

    items: np.ndarray
    rank: int
    auc_click: float
    target_buy: float
    slots: np.ndarray | None = None
    active: np.ndarray | None = None


def covisit_feature(
    bundle: Bundle, rec_rows: np.ndarray, cand_rows: np.ndarray
) -> np.ndarray | None:
    """The ranker's co-visitation input [B, C] as the engine computes it (None when the
    version has no co-visitation table)."""
    covisit = bundle.model.covisit
    if covisit is None:
        return None
    row_index, _ = bundle.index_maps()
    rec_index = np.where(rec_rows >= 0, row_index[np.maximum(rec_rows, 0)], 0)
    return covisit.scores(rec_index, row_index[np.maximum(cand_rows, 0)])


def score_rows(bundle: Bundle, states: list[InterestState], rows: np.ndarray,
               inputs: UserInputs | None = None) -> RankerOut:  # fmt: skip
    """Ranker outputs for the store ``rows`` [B, C] of each state, or the same rows [1, C] for
    every state (they then go into the graph once, broadcast over the batch)."""
    u = inputs if inputs is not None else user_inputs(bundle, states)
    cand = np.ascontiguousarray(bundle.store.feats[np.maximum(rows, 0)], np.float32)
    full_rows = np.broadcast_to(rows, (len(states), rows.shape[1]))
    cooc = covisit_feature(bundle, u.rec_rows, full_rows)
    return bundle.model.score(
        u.slots, u.strengths, u.recent, u.rec_mask, cand, cooc, buy_prior=u.buy_prior
    )


@dataclass
class Pick:
    """User ``i`` of one scored batch (``Recommender.score_batch``): candidates and scores."""

    scored: Scored
    i: int

    @property
    def state(self) -> InterestState:
        return self.scored.states[self.i]

    @property
    def rows(self) -> np.ndarray:
        return self.scored.rows(self.i)

    @property
    def active(self) -> np.ndarray:
        """The interest slots that could get list seats: those with a strength (tower-v2: the
        learned interests at or above ``interest_floor``; ranker-v1: the rule-built slots in
        use), the denominator of interest coverage (list tags are these slots' ids)."""
        return np.flatnonzero(self.scored.strengths[self.i] > 0)

    @property
    def p_click(self) -> np.ndarray:
        return np.asarray(self.scored.p_click(self.i))


class CapturingRecommender(Recommender):
    """The engine's Recommender, keeping each batch's scored candidates for re-selection."""

    def recommend_with_picks(
        self, states: list[InterestState], now: float
    ) -> tuple[list[list[Rec]], list[Pick]]:
        scored = self.score_batch(states, now)
        return self.select(scored), [Pick(scored, i) for i in range(len(states))]

    def repick(self, picks: list[Pick], opts: ServingSettings) -> list[list[Rec]]:
        """Lists the engine would select with ``opts`` from the same candidates and scores."""
        out: list[list[Rec]] = [[] for _ in picks]
        groups: dict[int, list[int]] = {}
        for j, p in enumerate(picks):
            groups.setdefault(id(p.scored), []).append(j)
        for members in groups.values():
            scored = picks[members[0]].scored
            lists = self.select(scored.subset([picks[j].i for j in members]), opts)
            for j, recs in zip(members, lists, strict=True):
                out[j] = recs
        return out


@contextlib.contextmanager
def popularity_as_of(store: Any, saved: tuple[np.ndarray, float]) -> Iterator[None]:
    """Serve the store's popularity as it was when ``saved`` was taken (exploration picks must
    not see events that follow the event being predicted)."""
    current = (store.pop, store.pop_ref)
    if saved[0].shape != current[0].shape:
        msg = f"popularity snapshot: expected shape {current[0].shape}, got {saved[0].shape}"
        raise ValueError(msg)
    store.pop, store.pop_ref = saved
    try:
        yield
    finally:
        store.pop, store.pop_ref = current


def variant_options(base: ServingSettings, name: str) -> ServingSettings:
    if name == "no-diversity":
        return base.model_copy(update={"diversify": False})
    return base


class EngineStream:
    """One model version in the ``stream`` protocol, answering for several systems that share
    its states and scores: ``variants`` maps a system name to its selection options."""

    def __init__(
        self,
        feed: Feed,
        cat: Catalogue,
        variants: dict[str, ServingSettings],
        score_targets: bool = True,
    ) -> None:
        """``score_targets=False`` skips the extra ranker call that scores each event's item
        (click/purchase AUC become nan): only for measuring the engine's own throughput."""
        self.feed, self.cat = feed, cat
        self.score_targets = score_targets
        self.names = list(variants)
        self.variants = variants
        main = variants[self.names[0]]
        self.rec = CapturingRecommender(feed.bundle, feed.lm.params, main)
        self.states: dict[str, InterestState] = {}
        self.unknown_items = 0
        self.last_picks: list[Pick] = []
        self.last_live: list[int] = []  # chunk positions of last_picks

    def _apply(self, ev: ReplayEvent) -> InterestState | None:
        before = self.states.get(ev.user)
        try:
            self.states[ev.user] = self.rec.apply(before, ev.lite)
        except UnknownItem:
            self.unknown_items += 1
        return before

    def warm(self, evs: list[ReplayEvent]) -> None:
        for ev in evs:
            self.feed.advance(ev.lite.ts)
            self._apply(ev)

    def step(
        self, evs: list[ReplayEvent], now: float, scored: list[bool]
    ) -> dict[str, list[Outcome | None]]:
        """Lists current before each event (catalogue and popularity as of ``now``, the chunk
        start; the caller guarantees no item appears inside the chunk), then apply them."""
        store = self.feed.store
        self.feed.advance(now)
        saved = (store.pop.copy(), store.pop_ref)
        before = [self._apply(ev) for ev in evs]
        live = [i for i, s in enumerate(before) if s is not None and scored[i]]
        out: dict[str, list[Outcome | None]] = {n: [None] * len(evs) for n in self.names}
        empty = Outcome(np.zeros(0, np.int64), -1, math.nan, math.nan)
        for i, ok in enumerate(scored):
            if ok and before[i] is None:
                for n in self.names:
                    out[n][i] = empty
        if not live:
            self.last_picks, self.last_live = [], []
            return out
        states = [s for i in live if (s := before[i]) is not None]  # live: all have a state
        with popularity_as_of(store, saved):
            lists, picks = self.rec.recommend_with_picks(states, now)
        self.last_picks, self.last_live = picks, live
        per_name = {self.names[0]: lists}
        for name in self.names[1:]:
            per_name[name] = self.rec.repick(picks, self.variants[name])
        t_rows = store.rows_for([evs[i].lite.item_id for i in live])
        nan = np.full((len(live), 1), np.nan, np.float32)
        tgt = (
            score_rows(self.feed.bundle, states, t_rows[:, None])
            if self.score_targets
            else RankerOut(nan, nan, nan)
        )
        index = self.cat.index
        for j, i in enumerate(live):
            ev, pick = evs[i], picks[j]
            other = pick.rows != t_rows[j]
            auc = share_below(pick.p_click[other], float(tgt.p_click[j, 0]))
            active = pick.active
            for name in self.names:
                recs = per_name[name][j]
                items = np.fromiter((index[r.item_id] for r in recs), np.int64, len(recs))
                hit = np.flatnonzero(items == ev.item)
                out[name][i] = Outcome(
                    items,
                    int(hit[0]) if hit.size else -1,
                    auc,
                    float(tgt.p_buy_given_interaction[j, 0]),
                    np.array([r.interest for r in recs], np.int64),
                    active,
                )
        return out
