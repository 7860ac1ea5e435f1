"""The ``loo`` protocol (RecBole / UniSRec leave-one-out), exactly as ``core.splits`` and
``core.baselines`` define it: each user's merged sequence, the last interaction is the test
target; full ranking over the catalogue (every item id of the events, sorted as strings); the
user's history (train prefix + validation item, minus the test item) masked; popularity and
co-occurrence fitted on the train prefixes only; ties to the lower catalogue index.

- ``pop``: ranks are ``core.baselines.loo_popularity_ranks`` itself (the MostPop reference).
- ``cooc``: item-kNN fitted on the train prefixes, scored from the user's last items.
- our model: the state before the test item is the user's train + validation events replayed
  through ``update_interests``; the ranking is the engine's list (retrieval, ranker,
  diversification when on: the list the worker would show) first, then every other item of
  the catalogue by the ranker's blended score. Exploration popularity = train prefixes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from schemas.settings import ServingSettings
from stream_app.core import metrics
from stream_app.core.baselines import CoOccurrence, loo_popularity_ranks, popularity_scores
from stream_app.core.interests import PURCHASE, InterestState, lite, update_interests
from stream_app.core.scorer import purchase_given_interaction
from stream_app.core.splits import LooSplit, loo_split
from stream_app.replay.catalogue import Catalogue, Feed, LoadedModel
from stream_app.replay.results import SystemResults, share_below
from stream_app.replay.systems import CapturingRecommender, score_rows, user_inputs

Progress = Callable[[str, int, int], None]
PREFIX_BONUS = 10.0  # blended scores are in [0, 1]: listed items go above every other item


@dataclass
class LooData:
    events: Sequence[Any]
    split: LooSplit
    cat: Catalogue
    users: list[str]  # users with a test target, in split order (capped by max_users)
    targets: np.ndarray  # [U] catalogue index of the test item
    purchase: np.ndarray  # [U] test interaction was a purchase
    masks: list[np.ndarray]  # per user: history items minus the target
    history: list[list[int]]  # per user: history item indices in time order
    train_pop: np.ndarray  # [N] train-prefix interaction counts
    target_ts: list[float]  # per user: epoch seconds of the test interaction


def prepare(events: Sequence[Any], items: Sequence[Any], max_users: int | None = None) -> LooData:
    split = loo_split(events)
    cat = Catalogue.build(items, [e.item_id for e in events], events_only=True)
    idx = cat.index
    users, targets, buys, masks, hist, when = [], [], [], [], [], []
    for user, s in split.users.items():
        if s.test is None:
            continue
        t = idx[s.test.item_id]
        h = [idx[x.item_id] for x in s.history_for_test()]
        users.append(user)
        targets.append(t)
        buys.append(s.test.purchase)
        masks.append(np.array(sorted(set(h) - {t}), np.int64))
        hist.append(h)
        when.append(s.test.ts)
    if max_users is not None:
        users, targets, buys = users[:max_users], targets[:max_users], buys[:max_users]
        masks, hist, when = masks[:max_users], hist[:max_users], when[:max_users]
    pop = popularity_scores(chain.from_iterable(split.train_sequences().values()), idx)
    return LooData(
        events,
        split,
        cat,
        users,
        np.array(targets, np.int64),
        np.array(buys, bool),
        masks,
        hist,
        pop,
        when,
    )


def _masked(scores: np.ndarray, masks: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    out = np.array(scores, np.float64, copy=True)
    for i, m in enumerate(masks):
        out[i, m] = -np.inf
    out[np.arange(len(targets)), targets] = scores[np.arange(len(targets)), targets]
    return out


def _top(scores: np.ndarray, n: int) -> list[np.ndarray]:
    """Top-n catalogue indices per row of (already masked) scores; ties -> lower index."""
    out = []
    for row in scores:
        m = min(n, int(np.isfinite(row).sum()))
        top = np.argpartition(-row, m - 1)[:m] if m else np.zeros(0, np.int64)
        out.append(top[np.lexsort((top, -row[top]))])
    return out


def _record(
    res: SystemResults,
    data: LooData,
    sl: slice,
    ranks: np.ndarray,
    scores: np.ndarray,
    click: np.ndarray,
    buy: np.ndarray,
    lists: list[np.ndarray],
    slots: list[np.ndarray] | None = None,
    active: list[np.ndarray] | None = None,
) -> None:
    """Add a batch of users; ``scores`` ranks (masked), ``click`` the click-head score, ``buy``
    the purchase score of every item (the model's P(purchase | interaction); a baseline's own
    score)."""
    for j, u in enumerate(range(sl.start, sl.stop)):
        t = data.targets[u]
        listable = np.isfinite(scores[j])
        listable[t] = False
        res.add(
            rank=int(ranks[j]),
            purchase=bool(data.purchase[u]),
            auc_click=share_below(click[j][listable], float(click[j, t])),
            target_buy=float(buy[j, t]),
            items=lists[j],
            history=len(data.history[u]),
            user=data.users[u],
            ts=data.target_ts[u],
            slots=None if slots is None else slots[j],
            active=None if active is None else active[j],
        )


def eval_pop(data: LooData, n_list: int) -> SystemResults:
    ranks, users = loo_popularity_ranks(data.events)
    ranks = ranks[: len(data.users)]
    if users[: len(data.users)] != data.users:
        msg = "loo_popularity_ranks: expected the same user order as the split"
        raise RuntimeError(msg)
    res = SystemResults("pop", n_list)
    for lo in range(0, len(data.users), 256):
        sl = slice(lo, min(lo + 256, len(data.users)))
        base = np.broadcast_to(data.train_pop, (sl.stop - lo, len(data.cat)))
        masked = _masked(base, data.masks[sl], data.targets[sl])
        _record(res, data, sl, ranks[sl], masked, base, base, _top(masked, n_list))
    return res


def eval_cooc(data: LooData, n_list: int, window: int = 5, n_recent: int = 5) -> SystemResults:
    idx = data.cat.index
    seqs = [[idx[x.item_id] for x in seq] for seq in data.split.train_sequences().values()]
    model = CoOccurrence(len(data.cat), window).fit(seqs)
    tie = data.train_pop / max(float(data.train_pop.max()), 1.0) * 1e-6
    res = SystemResults("cooc", n_list)
    for lo in range(0, len(data.users), 256):
        sl = slice(lo, min(lo + 256, len(data.users)))
        raw = np.stack(
            [
                model.scores(data.history[u], n_recent=n_recent) + tie
                for u in range(sl.start, sl.stop)
            ]
        )
        ranks = metrics.ranks_of_targets(raw, data.targets[sl], data.masks[sl])
        masked = _masked(raw, data.masks[sl], data.targets[sl])
        _record(res, data, sl, ranks, masked, raw, raw, _top(masked, n_list))
    return res


def user_states(lm: LoadedModel, data: LooData) -> list[InterestState]:
    """Each evaluated user's state after their train + validation events (input order on equal
    timestamps), replayed through the shared ``update_interests``."""
    from stream_app.core.interests import new_state

    params, ev = lm.params, data.events
    states = []
    for user in data.users:
        s = data.split.users[user]
        positions = sorted(i for x in s.history_for_test() for i in x.event_indices)
        positions.sort(key=lambda i: ev[i].ts)
        state = new_state(params.k, lm.model.text_dim, lm.model.space)
        for i in positions:
            row = data.cat.index[ev[i].item_id]
            state = update_interests(state, lm.text[row], lite(ev[i]), params)
        states.append(state)
    return states


@dataclass
class EngineLoo:
    """One model version; ``variants`` maps system name -> selection options. ``ranker_only``
    names an extra system: the ranker alone over the whole catalogue (no retrieval, no
    selection), i.e. the training pipeline's own test protocol, which isolates what retrieval
    and list selection cost or add."""

    lm: LoadedModel
    variants: dict[str, ServingSettings]
    sweep_lambdas: tuple[float, ...] = ()
    sweep: dict[float, SystemResults] = field(default_factory=dict)
    ranker_only: str | None = None

    def run(
        self,
        data: LooData,
        n_list: int,
        batch: int = 32,
        on_progress: Progress | None = None,
        label: str = "",
    ) -> dict[str, SystemResults]:
        feed = Feed(self.lm, data.cat)
        feed.add_all()
        store = feed.store
        train_events = sorted(
            (
                i
                for seq in data.split.train_sequences().values()
                for x in seq
                for i in x.event_indices
            ),
            key=lambda i: data.events[i].ts,
        )
        params = self.lm.params
        for i in train_events:
            e = lite(data.events[i])
            store.bump(
                store.row[e.item_id], e.ts, params.purchase_weight if e.kind == PURCHASE else 1.0
            )
        names = list(self.variants)
        rec = CapturingRecommender(feed.bundle, params, self.variants[names[0]])
        states = user_states(self.lm, data)
        cat_rows = store.rows_for(data.cat.ids)
        results = {n: SystemResults(n, n_list) for n in names}
        if self.ranker_only:
            results[self.ranker_only] = SystemResults(self.ranker_only, n_list)
        self.sweep = {lam: SystemResults(f"lambda={lam}", n_list) for lam in self.sweep_lambdas}
        total = len(data.users)
        for lo in range(0, total, batch):
            sl = slice(lo, min(lo + batch, total))
            sts = states[sl]
            click, buy = self._full_scores(feed, sts, cat_rows)
            blend = rec.opts.purchase_blend
            score = (1 - blend) * click + blend * buy
            now = max((s.updated for s in sts), default=0.0)
            lists, picks = rec.recommend_with_picks(sts, now)
            active = [p.active for p in picks]
            for n in names:
                chosen = lists if n == names[0] else rec.repick(picks, self.variants[n])
                self._rank(results[n], data, sl, score, click, buy, chosen, active)
            for lam, res in self.sweep.items():
                opts = rec.opts.model_copy(update={"mmr_lambda": lam, "diversify": True})
                self._rank(res, data, sl, score, click, buy, rec.repick(picks, opts), active)
            if self.ranker_only:
                self._rank(
                    results[self.ranker_only], data, sl, score, click, buy, [[]] * len(sts), active
                )
            if on_progress is not None:
                on_progress(label, sl.stop, total)
        if self.ranker_only:  # no list was selected: no interest slots to report
            results[self.ranker_only].slots.clear()
            results[self.ranker_only].active.clear()
        return results

    def _full_scores(
        self, feed: Feed, states: list[InterestState], cat_rows: np.ndarray, chunk: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """(p_click, p_purchase) [B, N] of every catalogue item. The candidates are the same
        for the whole batch, so they go in once as [1, C, F] (the graph broadcasts them)."""
        n = len(cat_rows)
        click = np.zeros((len(states), n), np.float32)
        buy = np.zeros_like(click)
        inputs = user_inputs(feed.bundle, states)
        for lo in range(0, n, chunk):
            out = score_rows(feed.bundle, states, cat_rows[None, lo : lo + chunk], inputs)
            click[:, lo : lo + chunk], buy[:, lo : lo + chunk] = out.p_click, out.p_purchase
        return click, buy

    def _rank(
        self,
        res: SystemResults,
        data: LooData,
        sl: slice,
        score: np.ndarray,
        click: np.ndarray,
        buy: np.ndarray,
        lists: list[list[Any]],
        active: list[np.ndarray],
    ) -> None:
        """Record a batch's lists; ``active`` per user: the slots that could get seats."""
        idx = data.cat.index
        ranked = np.array(score, np.float64, copy=True)
        slots = []
        for j, recs in enumerate(lists):
            items = np.fromiter((idx[r.item_id] for r in recs), np.int64, len(recs))
            ranked[j, items] = PREFIX_BONUS + (len(items) - np.arange(len(items)))
            slot_of = {int(i): r.interest for i, r in zip(items, recs, strict=True)}
            slots.append(slot_of)
        masks, targets = data.masks[sl], data.targets[sl]
        ranks = metrics.ranks_of_targets(ranked, targets, masks)
        masked = _masked(ranked, masks, targets)
        tops = _top(masked, res.n_list)
        item_slots = [
            np.array([s.get(int(i), -1) for i in top], np.int64)
            for s, top in zip(slots, tops, strict=True)
        ]
        given = purchase_given_interaction(click, buy)
        _record(res, data, sl, ranks, masked, click, given, tops, item_slots, active)


def loo_reference_check(res: SystemResults, ks: Sequence[int], events: Sequence[Any]) -> bool:
    """True when the pop system's HR/NDCG equal ``loo_popularity_eval`` (full user set)."""
    from stream_app.core.baselines import loo_popularity_eval

    ref = loo_popularity_eval(events, ks)
    got = metrics.ranking_metrics(np.asarray(res.ranks), ks)
    return all(math.isclose(ref[k], got[k], abs_tol=1e-12) for k in ref)
