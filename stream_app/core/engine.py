"""The per-event core shared by the worker and replay: apply an event to a user's state, then
(batched over events) retrieve candidates per interest slot, score them with the ONNX
ranker, and pick a diversified top-K with the interest slot and the reasons filled in.

``Bundle`` is what a model swap replaces in one reference change: model + catalogue store +
retriever always come from the same version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np

from schemas.settings import ServingSettings
from stream_app.core.ann import StoreRetriever
from stream_app.core.catalogue import ItemStore
from stream_app.core.diversify import (
    by_score_within_pages,
    mmr_select_batch,
    pool_batch,
    slot_quotas_batch,
)
from stream_app.core.interests import (
    PURCHASE,
    EventLite,
    InterestParams,
    InterestState,
    new_state,
    update_interests,
)
from stream_app.core.retrieval import Retriever
from stream_app.core.scorer import RankerOut, Scorer

EXPLORE_FRESH_S = 7 * 24 * 3600.0
COVISIT_PER_ITEM = 20
NEW_ITEM_POOL = 512  # newest items unknown to the model searched by content for cold start
NEW_ITEM_PER_USER = 2  # of them added to each user's candidates
ISIN_TABLE_MAX = 4_000_000  # candidate exclusion by lookup table up to this many keys (bytes)

S = TypeVar("S", bound=Scorer)


class UnknownItem(KeyError):
    """The event's item is not in the catalogue (yet)."""

    reason = "unknown_item"

    def __str__(self) -> str:
        return f"event.item_id: expected an item in the catalogue, got {self.args[0]!r}"


class Rec(NamedTuple):
    """One seat of a list (immutable; a NamedTuple: built for every seat of every list, it
    costs a third of a frozen dataclass)."""

    item_id: str
    score: float
    p_click: float
    p_purchase: float
    interest: int
    because: list[str]


@dataclass
class Scored:
    """One scored batch: what selection needs, kept so it can re-select at other settings."""

    states: list[InterestState]
    cand_rows: np.ndarray  # [B, W] store rows (0 where no candidate)
    score: np.ndarray  # [B, W] blended score; -inf = no candidate
    slot: np.ndarray  # [B, W] interest slot served (-1 = exploration / none)
    strengths: np.ndarray  # [B, K]
    rec_rows: np.ndarray  # [B, L] store rows of the recent items, newest first (-1 = gone)
    out: RankerOut  # raw ranker outputs [B, W]
    new_match: np.ndarray | None = None  # [B, W] items unknown to the model: interest match
    tower_attn: np.ndarray | None = None  # [B, K, L] learned interests' attention (tower-v2)

    def rows(self, i: int) -> np.ndarray:
        """Store rows of user i's candidates."""
        return self.cand_rows[i][np.isfinite(self.score[i])]

    def p_click(self, i: int) -> np.ndarray:
        return self.out.p_click[i][np.isfinite(self.score[i])]

    def subset(self, idx: list[int] | np.ndarray) -> Scored:
        idx = np.asarray(idx, np.int64)
        return Scored(
            [self.states[i] for i in idx],
            self.cand_rows[idx],
            self.score[idx],
            self.slot[idx],
            self.strengths[idx],
            self.rec_rows[idx],
            self.out.subset(idx),
            self.new_match[idx] if self.new_match is not None else None,
            self.tower_attn[idx] if self.tower_attn is not None else None,
        )


class BundleRetriever(Retriever, Protocol):
    """What the engine and the worker ask of a bundle's retriever: ``search``, plus
    ``reindex`` (off the event loop after catalogue changes; True when ``kind`` changed)."""

    @property
    def kind(self) -> str: ...

    def reindex(self) -> bool: ...


@runtime_checkable
class OffersRetriever(Protocol):
    """A model version that brings its own retriever for a store (the serving side offers one
    with the item matrix on the GPU when the version runs on CUDA; None: use the core's)."""

    def retriever_for(self, store: ItemStore, ann_threads: int = 1) -> BundleRetriever | None: ...


@dataclass
class Bundle(Generic[S]):
    """A model version and the catalogue store built with it (never one without the other);
    ``ann_threads``: faiss threads of the ANN search once the catalogue is large enough
    (``serving.ann_threads``)."""

    model: S
    store: ItemStore
    ann_threads: int = 1
    retriever: BundleRetriever = field(init=False)

    _maps: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        offered: BundleRetriever | None = None
        if isinstance(self.model, OffersRetriever):  # e.g. the item matrix on the GPU
            offered = self.model.retriever_for(self.store, self.ann_threads)
        if offered is None:
            offered = StoreRetriever(self.store, self.model.d, threads=self.ann_threads)
        self.retriever = offered

    def index_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(store row -> model item index, model item index -> store row or -1), rebuilt only
        when the catalogue changed; items unknown to the model map to index 0."""
        maps = self._current_maps()
        return maps[1], maps[2]

    def unknown_rows(self) -> np.ndarray:
        """Store rows of the newest live items the model has never seen (at most
        ``NEW_ITEM_POOL``): the cold-start pool searched by content."""
        return self._current_maps()[3]

    def _current_maps(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        if self._maps is None or self._maps[0] != self.store.version:
            ids = self.store.ids
            get = self.model.id_index.get
            row_index = np.fromiter(
                (get(i, 0) if i is not None else 0 for i in ids), np.int64, len(ids)
            )
            index_row = np.full(len(self.model.id_index) + 1, -1, np.int64)
            live = row_index > 0
            index_row[row_index[live]] = np.flatnonzero(live)
            unknown = np.flatnonzero((row_index == 0) & self.store.alive[: len(ids)])
            newest = np.argsort(-self.store.added_ts[unknown], kind="stable")[:NEW_ITEM_POOL]
            self._maps = (self.store.version, row_index, index_row, unknown[newest])
        return self._maps


class UserInputs(NamedTuple):
    """A batch's user side as the model sees it: the interests (the state's rule-built slots,
    or with tower-v2 the learned tower's interests) and the recent items, newest first."""

    slots: np.ndarray  # [B, K, D] float32
    strengths: np.ndarray  # [B, K]
    recent: np.ndarray  # [B, L, F] feats of the recent items (zeros where none)
    rec_mask: np.ndarray  # [B, L]
    rec_rows: np.ndarray  # [B, L] store rows of the recent items (-1 = none / gone)
    tower_attn: np.ndarray | None = None  # [B, K, L] (tower-v2)
    buy_prior: np.ndarray | None = None  # [B] the purchase head's user input (tower-v2)


def user_inputs(bundle: Bundle[Any], states: list[InterestState]) -> UserInputs:
    """The one place the model's user-side inputs are built (worker, replay, diagnostics):
    recent items newest first with their kind and age in hours before the newest; a version
    with a learned tower turns them into its K interests and weights (a user whose recent
    items are all gone from the catalogue has no active interest)."""
    model, store = bundle.model, bundle.store
    n, n_rec = len(states), model.recent_len
    slots = np.stack([s.slots for s in states]).astype(np.float32)
    strengths = np.stack([s.strength for s in states]).astype(np.float32)
    rec_rows = np.full((n, n_rec), -1, np.int64)
    rec_kind = np.zeros((n, n_rec), np.int64)
    rec_age = np.zeros((n, n_rec), np.float32)
    for i, s in enumerate(states):
        ids = s.recent_items[::-1][:n_rec]
        m = len(ids)
        rec_rows[i, :m] = store.rows_for(ids)
        if m:
            ts = np.asarray(s.recent_ts[::-1][:m], np.float64)
            rec_age[i, :m] = np.maximum(ts[0] - ts, 0.0) / 3600.0
            rec_kind[i, :m] = s.recent_kind[::-1][:m]
    rec_mask = (rec_rows >= 0).astype(np.float32)
    recent = (store.feats[np.maximum(rec_rows, 0)] * rec_mask[..., None]).astype(np.float32)
    tower = model.tower(recent, rec_mask, rec_kind, rec_age)
    if tower is None:
        return UserInputs(slots, strengths, recent, rec_mask, rec_rows)
    has_hist = rec_mask.any(1, keepdims=True)
    return UserInputs(
        tower.interests.astype(np.float32, copy=False),
        np.where(has_hist, tower.weights, 0.0).astype(np.float32),
        recent,
        rec_mask,
        rec_rows,
        tower.attn,
        tower.buy_prior,
    )


def _rule_slots(states: list[InterestState]) -> tuple[np.ndarray, np.ndarray]:
    """The states' rule-built interest slots [B, K, Dt] (pretrained text space) and which are
    active [B, K]."""
    slots = np.stack([s.slots for s in states]).astype(np.float32)
    return slots, np.stack([s.strength for s in states]) > 0


def _heaviest_recent(att: np.ndarray, rec_rows: np.ndarray, n: int) -> tuple[list[Any], list[Any]]:
    """Attention ``att`` [B, M, L] over each user's recent items (``rec_rows`` [B, L]): per
    user and row, the store rows and weights of the ``n`` heaviest items, heaviest first, as
    Python lists (read seat by seat)."""
    order = np.argsort(-att, axis=2)[:, :, :n]
    rows = np.take_along_axis(np.broadcast_to(rec_rows[:, None, :], att.shape), order, 2)
    return rows.tolist(), np.take_along_axis(att, order, 2).tolist()


def strong_interests(weights: np.ndarray, floor: float) -> np.ndarray:
    """[B, K] learned interest weights with those below ``floor`` set to 0 (each user keeps
    their strongest one): the interests that get list seats (quotas) and tag candidates."""
    keep = (weights >= floor) | (weights == weights.max(1, keepdims=True))
    return np.where(keep & (weights > 0), weights, 0.0).astype(np.float32)


class Recommender(Generic[S]):
    def __init__(self, bundle: Bundle[S], params: InterestParams, opts: ServingSettings) -> None:
        if bundle.model.k != params.k:
            msg = (
                f"interests.k: the model {bundle.model.version} was trained with k="
                f"{bundle.model.k}, got k={params.k} in the settings"
            )
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
        """Top-K lists for a batch of states: ``select(score_batch(states, now))``."""
        if not states:
            return []
        return self.select(self.score_batch(states, now))

    def score_batch(self, states: list[InterestState], now: float) -> Scored:
        """Retrieve and score candidates for a batch (vectorised over users: retrieval, union
        and scoring are a few numpy/ORT calls for the whole batch)."""
        b = self.bundle
        model, store, opts = b.model, b.store, self.opts
        k, n = model.k, len(states)
        u = user_inputs(b, states)
        slots, strengths, recent, rec_mask, rec_rows = (
            u.slots,
            u.strengths,
            u.recent,
            u.rec_mask,
            u.rec_rows,
        )
        queries, valid = model.queries(slots, strengths, recent[:, 0], rec_mask[:, 0] > 0)
        per_q = max(1, -(-opts.candidates // (k + 1)) + 4)
        found = b.retriever.search(queries.reshape(-1, model.d), valid.reshape(-1), per_q)
        # round-robin over the user's queries: best of each query first
        found = found.reshape(n, k + 1, per_q).transpose(0, 2, 1).reshape(n, -1)
        row_index, index_row = b.index_maps()
        rec_index = np.where(rec_rows >= 0, row_index[np.maximum(rec_rows, 0)], 0)
        if model.covisit is not None:  # co-visitation neighbours of the newest items first
            nbr = model.covisit.neighbours(rec_index[:, :2], COVISIT_PER_ITEM)
            found = np.concatenate([np.where(nbr > 0, index_row[nbr], -1), found], 1)
        content = self._content_match(states, u)
        fresh = self._new_item_candidates(content)
        if fresh is not None:
            found = np.concatenate([fresh, found], 1)
        cand_rows, cand_ok, extra = self._candidates(states, found, rec_rows, now)
        cand = store.feats[cand_rows]
        cooc = (
            model.covisit.scores(rec_index, row_index[cand_rows])
            if model.covisit is not None
            else None
        )
        out = model.score(
            slots, strengths, recent.astype(np.float32), rec_mask, cand, cooc, u.buy_prior
        )
        score = (1 - opts.purchase_blend) * out.p_click + opts.purchase_blend * out.p_purchase
        score = np.where(cand_ok, score, -np.inf)
        # the interest a candidate serves: the active slot its content matches best (the
        # ranker's content term), falling back to the ranker's attention over slots
        match = model.slot_match(slots, cand)
        if match is None:
            match = out.attn[:, :, :k]
        if u.tower_attn is not None:  # learned weights: weak interests get no seat of their own
            strengths = strong_interests(strengths, opts.interest_floor)
        match = np.where((strengths > 0)[:, None, :], match, -np.inf)
        slot = np.where(np.isfinite(match.max(2)), match.argmax(2), -1)
        slot[extra] = -1  # exploration candidates serve no interest slot
        unknown = (row_index[cand_rows] == 0) & cand_ok & ~extra
        new_match = np.where(unknown, match.max(2), -np.inf)
        if u.tower_attn is not None:  # cold start by text (see _content_match), sparse
            new_match = np.full(unknown.shape, -np.inf, np.float32)
            bi, ci = np.nonzero(unknown)
            if bi.size:
                text_slots, active = _rule_slots(states)
                m = np.einsum("nd,nkd->nk", store.text[cand_rows[bi, ci]], text_slots[bi])
                new_match[bi, ci] = np.where(active[bi], m, -np.inf).max(1)
        return Scored(
            states,
            cand_rows,
            score,
            slot,
            strengths,
            rec_rows,
            out,
            new_match,
            u.tower_attn,
        )

    def select(self, scored: Scored, opts: ServingSettings | None = None) -> list[list[Rec]]:
        """Diversified (or plain) top-K from scored candidates; ``opts`` overrides the
        engine's selection options (top_k, mmr_lambda, diversify, explore), so replay can
        re-select at other settings without scoring again."""
        opts = opts or self.opts
        store = self.bundle.store
        score, slot, cand_rows = scored.score, scored.slot, scored.cand_rows
        pool = pool_batch(score, max(3 * opts.top_k, 30))
        p_score = np.take_along_axis(score, pool, 1)
        if opts.diversify:
            p_rows = np.take_along_axis(cand_rows, pool, 1)
            picked = mmr_select_batch(
                p_score,
                store.text[p_rows],
                np.take_along_axis(slot, pool, 1),
                slot_quotas_batch(scored.strengths, opts.top_k),
                opts.top_k,
                opts.mmr_lambda,
                explore_max=opts.explore,
            )
            picked = by_score_within_pages(picked, p_score, opts.page_size)
        else:
            first = np.arange(min(opts.top_k, pool.shape[1]))[None, :]
            picked = np.where(np.isfinite(p_score[:, : opts.top_k]), first, -1)
        cols = np.where(picked >= 0, np.take_along_axis(pool, np.maximum(picked, 0), 1), -1)
        return self._lists(scored, self._seat_new_item(scored, cols, opts))

    def _content_match(
        self, states: list[InterestState], u: UserInputs
    ) -> Callable[[np.ndarray], np.ndarray | None]:
        """``match(rows)`` [B, N, K] (rows [B, N] or [1, N]): how well items' content matches
        each user's active interests; -inf for inactive ones; None: the version has no
        content match. ranker-v1: in the ranker's own content space. tower-v2: in the
        pretrained text space, against the state's rule-built slots (a never-seen item's
        learned vector lacks the id embedding its known twin has, so text is what places it)."""
        store, model = self.bundle.store, self.bundle.model
        if u.tower_attn is not None:
            text_slots, text_active = _rule_slots(states)
            slots, active = text_slots.transpose(0, 2, 1), text_active[:, None, :]

            def by_text(rows: np.ndarray) -> np.ndarray | None:
                return np.where(active, np.matmul(store.text[rows], slots), -np.inf)

            return by_text

        def by_model(rows: np.ndarray) -> np.ndarray | None:
            match = model.slot_match(u.slots, store.feats[rows])
            if match is None:
                return None
            return np.where((u.strengths > 0)[:, None, :], match, -np.inf)

        return by_model

    def _new_item_candidates(
        self, content: Callable[[np.ndarray], np.ndarray | None]
    ) -> np.ndarray | None:
        """[B, NEW_ITEM_PER_USER] rows of never-seen items that best match one of each user's
        active interests by content (``_content_match``; -1 where none). Retrieval by the
        learned query vectors rarely finds them (no id embedding, no co-visitation), so they
        get this small exact search of their own; the seat in ``select`` decides if one is
        shown."""
        if self.opts.new_item_match <= 0:
            return None
        rows = self.bundle.unknown_rows()
        if rows.size == 0:
            return None
        match = content(rows[None])
        if match is None:
            return None
        best = match.max(2)  # [B, U]
        n = min(NEW_ITEM_PER_USER, rows.size)
        top = np.argpartition(-best, n - 1, axis=1)[:, :n] if rows.size > n else None
        if top is None:
            top = np.broadcast_to(np.arange(rows.size), best.shape)
        ok = np.take_along_axis(best, top, 1) >= self.opts.new_item_match
        return np.where(ok, rows[top], -1)

    @staticmethod
    def _seat_new_item(scored: Scored, cols: np.ndarray, opts: ServingSettings) -> np.ndarray:
        """Cold start: items the model has never seen have no id embedding and no
        co-visitation, so they rarely outscore known items. When a list has none, its last
        seat goes to the best-scoring unknown item whose text matches one of the user's
        interests (cosine >= ``new_item_match``), keeping that interest as its slot."""
        if scored.new_match is None or opts.new_item_match <= 0 or cols.shape[1] == 0:
            return cols
        eligible = (scored.new_match >= opts.new_item_match) & np.isfinite(scored.score)
        if not eligible.any():
            return cols
        rows = np.arange(cols.shape[0])
        chosen = np.zeros_like(eligible)
        valid = cols >= 0
        chosen[np.repeat(rows, cols.shape[1])[valid.ravel()], cols[valid]] = True
        has_new = (eligible & chosen).any(1)
        best_score = np.where(eligible & ~chosen, scored.score, -np.inf)
        best = best_score.argmax(1)
        last = valid.sum(1) - 1
        ok = np.isfinite(best_score[rows, best]) & ~has_new & (last >= 0)
        out = cols.copy()
        out[rows[ok], last[ok]] = best[ok]
        return out

    def _candidates(
        self, states: list[InterestState], found: np.ndarray, rec_rows: np.ndarray, now: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Union of retrieved rows (first occurrence kept), minus purchased items and the
        newest items, capped at ``candidates``; then up to 3 x ``explore`` popular fresh items.
        Returns rows [B, W], valid [B, W], is_exploration [B, W]."""
        store, opts = self.bundle.store, self.opts
        n = len(states)
        explore = self._explore_rows(now)
        allr = np.concatenate([found, np.broadcast_to(explore, (n, explore.shape[0]))], 1)
        is_extra = np.zeros(allr.shape[1], bool)
        is_extra[found.shape[1] :] = True
        width = store.size + 1
        keys = np.arange(n)[:, None] * width + allr
        drop = allr < 0
        ex_keys = [
            i * width
            + np.concatenate([store.rows_for(s.purchased), rec_rows[i, : opts.exclude_recent]])
            for i, s in enumerate(states)
        ]
        ex = np.concatenate(ex_keys) if ex_keys else np.zeros(0, np.int64)
        # a lookup table over the batch's key range (n * width bools) while it stays small:
        # the same result as the sort-based isin, 4x faster at 64 users x 10,000 items
        ex = ex[ex % width != width - 1]
        drop |= (
            np.isin(keys, ex, kind="table") if n * width <= ISIN_TABLE_MAX else np.isin(keys, ex)
        )
        order = np.argsort(keys, axis=1, kind="stable")
        sk = np.take_along_axis(keys, order, 1)
        dup_sorted = np.zeros_like(sk, bool)
        dup_sorted[:, 1:] = sk[:, 1:] == sk[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, 1)
        keep = ~drop & ~dup
        kept_retrieved = np.cumsum(keep & ~is_extra, 1)
        kept_extra = np.cumsum(keep & is_extra, 1)
        keep &= np.where(
            is_extra, kept_extra <= opts.explore * 3, kept_retrieved <= opts.candidates
        )
        w = max(1, int(keep.sum(1).max()))
        take = np.argsort(~keep, axis=1, kind="stable")[:, :w]
        rows = np.take_along_axis(allr, take, 1)
        ok = np.take_along_axis(keep, take, 1)
        extra = np.broadcast_to(is_extra, allr.shape)
        return np.where(ok, rows, 0), ok, np.take_along_axis(extra, take, 1) & ok

    def _explore_rows(self, now: float) -> np.ndarray:
        store, n = self.bundle.store, self.opts.explore * 3
        if n == 0:
            return np.zeros(0, np.int64)
        fresh = store.popular(n, fresh_since=now - EXPLORE_FRESH_S)
        return fresh if len(fresh) >= n else np.concatenate([fresh, store.popular(n)])

    def _learned_because(self, scored: Scored, n: int = 2) -> list[list[list[str]]] | None:
        """tower-v2: per user and interest, the recent items that weigh most in it (the
        tower's attention, weight > 0.05, up to ``n``, heaviest first); None for ranker-v1."""
        if scored.tower_attn is None:
            return None
        ids = self.bundle.store.ids
        rows, weight = _heaviest_recent(scored.tower_attn, scored.rec_rows, n)
        out: list[list[list[str]]] = []
        for rows_i, weight_i in zip(rows, weight, strict=True):
            per: list[list[str]] = []
            for rows_k, weight_k in zip(rows_i, weight_i, strict=True):
                items: list[str] = []
                for r, w in zip(rows_k, weight_k, strict=True):
                    item = ids[r] if r >= 0 else None
                    if w > 0.05 and item is not None and item not in items:
                        items.append(item)
                per.append(items)
            out.append(per)
        return out

    def _attended(self, scored: Scored, cols: np.ndarray) -> tuple[list[Any], list[Any]]:
        """ranker-v1: per user and list seat, the 3 recent items (store rows, weights) the
        ranker attended to most, heaviest first."""
        rows_b = np.arange(cols.shape[0])[:, None]
        att = scored.out.attn[rows_b, np.maximum(cols, 0), self.bundle.model.k :]  # [B, top_k, L]
        return _heaviest_recent(att, scored.rec_rows, 3)

    def _lists(self, scored: Scored, cols: np.ndarray) -> list[list[Rec]]:
        """Rec objects; ``because`` = the latest items that built the candidate's interest slot
        (up to 2) plus the recent item the ranker attended to most (weight > 0.05); with a
        learned tower (tower-v2), the recent items that weigh most in that interest. (Python
        lists, not numpy scalars, in the loop: this runs for every seat of every list.)"""
        store, out = self.bundle.store, scored.out
        safe = np.maximum(cols, 0)
        rows_b = np.arange(cols.shape[0])[:, None]
        pc, pp = out.p_click[rows_b, safe].tolist(), out.p_purchase[rows_b, safe].tolist()
        sc, sl = scored.score[rows_b, safe].tolist(), scored.slot[rows_b, safe].tolist()
        cr, seated = scored.cand_rows[rows_b, safe].tolist(), (cols >= 0).tolist()
        lists: list[list[Rec]] = []
        ids, id_of = store.ids, store.id_of
        learned = self._learned_because(scored)
        top3_rows, top3_w = self._attended(scored, cols) if learned is None else ([], [])
        for i, state in enumerate(scored.states):
            recs = []
            sc_i, pc_i, pp_i, sl_i, cr_i = sc[i], pc[i], pp[i], sl[i], cr[i]
            for j, ok in enumerate(seated[i]):
                if not ok:
                    continue
                s_j = sl_i[j]
                because: list[str] = []
                if s_j >= 0 and learned is not None:
                    because = list(learned[i][s_j])
                elif s_j >= 0:
                    # the items that built the interest, then the one the ranker attended most
                    because = state.because(s_j, 2)
                    for r, w in zip(top3_rows[i][j], top3_w[i][j], strict=True):
                        if w > 0.05 and r >= 0 and ids[r] is not None and ids[r] not in because:
                            because.append(ids[r])  # type: ignore[arg-type]
                            break
                recs.append(Rec(id_of(cr_i[j]), sc_i[j], pc_i[j], pp_i[j], s_j, because))
            lists.append(recs)
        return lists
