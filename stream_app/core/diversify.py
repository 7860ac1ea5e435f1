"""Diversified top-K: interest-proportional quotas over the user's slots, plus MMR.

Each candidate carries the interest slot it serves (-1 = exploration). Slot quotas are the
largest-remainder split of K by slot strength (every active slot gets a seat when K allows).
Within the quotas, MMR picks greedily: lambda * relevance - (1 - lambda) * max cosine to the
items already picked. With lambda = 1 and no quotas this is plain top-K by score.

Then each page of the list (``page_size`` items, a screen or carousel) is shown in score
order: diversification decides which items a page holds, the model's score their order. A
page's set, and so its diversity (ILD, coverage), is unchanged, and the best-scored items
come first, which is what ranking accuracy weighs most. Measured on the synthetic stream
protocol (README, "How it works", tower-v2): with it, +16 % ILD@10 cost 1.2-1.6 % NDCG@10; greedy
MMR order, 2.9 %.
"""

from __future__ import annotations

import numpy as np


def slot_quotas(strengths: np.ndarray, k: int) -> np.ndarray:
    """Seats per slot for a list of length k, proportional to strength (largest remainder)."""
    active = strengths > 0
    quotas = np.zeros(strengths.shape[0], np.int64)
    n_active = int(active.sum())
    if n_active == 0 or k <= 0:
        return quotas
    share = np.where(active, strengths, 0.0) / strengths[active].sum()
    rest = k
    if k >= n_active:
        quotas[active] = 1
        rest = k - n_active
    raw = share * rest
    quotas += np.floor(raw).astype(np.int64)
    left = k - int(quotas.sum())
    act = np.flatnonzero(active)
    frac = raw[act] - np.floor(raw[act])
    for j in act[np.argsort(-frac, kind="stable")][:left]:
        quotas[j] += 1
    quotas[int(np.argmax(share))] += k - int(quotas.sum())
    return quotas


def _pool(scores: np.ndarray, slots: np.ndarray, k: int) -> np.ndarray:
    """Candidates worth considering: the best 3k by score plus the best k of every slot."""
    c = scores.shape[0]
    if c <= 3 * k:
        return np.arange(c)
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(c, bool)
    keep[order[: 3 * k]] = True
    ranked_slots = slots[order]
    for s in np.unique(slots):
        keep[order[ranked_slots == s][:k]] = True
    return np.flatnonzero(keep)


def mmr_select(
    scores: np.ndarray,
    vecs: np.ndarray,
    slots: np.ndarray,
    quotas: np.ndarray | None,
    k: int,
    lam: float,
    explore_max: int = 2,
) -> list[int]:
    """Indices (into the candidate arrays) of the diversified top-k, in rank order.

    scores [C] relevance; vecs [C, D] unit vectors; slots [C] slot of each candidate (-1:
    exploration, at most ``explore_max`` picked); quotas [K] seats per slot or None.
    """
    if scores.shape[0] == 0 or k <= 0:
        return []
    pool = _pool(scores, slots, k)
    sc, sl = scores[pool], slots[pool]
    pv = vecs[pool] if lam < 1.0 else None
    c = pool.shape[0]
    lo, hi = float(sc.min()), float(sc.max())
    rel = (sc - lo) / (hi - lo) if hi > lo else np.ones(c)
    max_sim = np.zeros(c)
    taken = np.zeros(c, bool)
    n_slots = int(max(sl.max(initial=-1) + 1, 0)) if quotas is None else quotas.shape[0]
    # seats per slot; index n_slots (= slot -1 via the last position) is exploration
    seats = np.full(n_slots + 1, k, np.int64)
    if quotas is not None:
        seats[:n_slots] = quotas
    seats[n_slots] = explore_max
    slot_ix = np.where(sl < 0, n_slots, np.minimum(sl, n_slots))
    used = np.zeros(n_slots + 1, np.int64)
    picked: list[int] = []
    relax = quotas is None
    while len(picked) < min(k, c):
        full = used >= seats
        if relax:
            full[:n_slots] = False
        allowed = ~taken & ~full[slot_ix]
        if not allowed.any():
            if relax:
                allowed = ~taken
            else:
                relax = True
                continue
        value = rel if pv is None else lam * rel - (1.0 - lam) * max_sim
        i = int(np.argmax(np.where(allowed, value, -np.inf)))
        picked.append(i)
        taken[i] = True
        used[slot_ix[i]] += 1
        if pv is not None:
            max_sim = np.maximum(max_sim, pv @ pv[i])
    return [int(pool[i]) for i in picked]


# -- batched versions (the engine's hot path: one set of numpy ops for B users) -----------


def slot_quotas_batch(strengths: np.ndarray, k: int) -> np.ndarray:
    """``slot_quotas`` for every row of strengths [B, K] at once."""
    b, n = strengths.shape
    active = strengths > 0
    n_active = active.sum(1)
    total = np.where(active, strengths, 0.0).sum(1, keepdims=True)
    share = np.where(active, strengths, 0.0) / np.maximum(total, 1e-30)
    base = np.where((k >= n_active)[:, None], active, False).astype(np.int64)
    rest = k - base.sum(1)
    raw = share * rest[:, None]
    quotas = base + np.floor(raw).astype(np.int64)
    left = k - quotas.sum(1)
    frac = np.where(active, raw - np.floor(raw), -1.0)
    order = np.argsort(-frac, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(b, 0), axis=1)
    quotas += (active & (rank < left[:, None])).astype(np.int64)
    top = np.argmax(share, axis=1)
    quotas[np.arange(b), top] += k - quotas.sum(1)
    quotas[n_active == 0] = 0
    return quotas


def mmr_select_batch(
    scores: np.ndarray,
    vecs: np.ndarray,
    slots: np.ndarray,
    quotas: np.ndarray | None,
    k: int,
    lam: float,
    explore_max: int = 2,
) -> np.ndarray:
    """``mmr_select`` for B users at once over a pool: scores [B, P] (-inf = no candidate),
    vecs [B, P, D] unit vectors, slots [B, P] (-1 = exploration), quotas [B, K] or None.
    Returns [B, k] pool indices in rank order, -1 where a user has fewer candidates."""
    b, p = scores.shape
    valid = np.isfinite(scores)
    lo = np.where(valid, scores, np.inf).min(1, keepdims=True)
    hi = np.where(valid, scores, -np.inf).max(1, keepdims=True)
    span = hi - lo
    rel = np.where(span > 0, (scores - lo) / np.where(span > 0, span, 1.0), 1.0)
    rel = np.where(valid, rel, 0.0)  # never picked (taken below); keeps lam * rel finite
    n_slots = quotas.shape[1] if quotas is not None else int(max(slots.max(initial=-1) + 1, 0))
    seats = np.full((b, n_slots + 1), k, np.int64)
    if quotas is not None:
        seats[:, :n_slots] = quotas
    seats[:, n_slots] = explore_max
    slot_ix = np.where(slots < 0, n_slots, np.minimum(slots, n_slots))
    used = np.zeros((b, n_slots + 1), np.int64)
    relax = np.full(b, quotas is None)
    taken = ~valid
    max_sim = np.zeros((b, p))
    rows = np.arange(b)
    picked = np.full((b, k), -1, np.int64)
    for step in range(min(k, p)):
        full = used >= seats
        full[relax, :n_slots] = False
        allowed = ~taken & ~np.take_along_axis(full, slot_ix, 1)
        stuck = ~allowed.any(1) & (~taken).any(1)
        if stuck.any():  # quotas exhausted: relax them (exploration cap still holds) ...
            relax |= stuck
            full[stuck, :n_slots] = False
            allowed[stuck] = (~taken & ~np.take_along_axis(full, slot_ix, 1))[stuck]
            stuck = ~allowed.any(1) & (~taken).any(1)
            allowed[stuck] = ~taken[stuck]  # ... unless only exploration is left
        value = rel if lam >= 1.0 else lam * rel - (1.0 - lam) * max_sim
        value = np.where(allowed, value, -np.inf)
        i = value.argmax(1)
        ok = np.isfinite(value[rows, i])
        picked[ok, step] = i[ok]
        taken[rows[ok], i[ok]] = True
        np.add.at(used, (rows[ok], slot_ix[rows[ok], i[ok]]), 1)
        if lam < 1.0:
            chosen = vecs[rows, i]  # [B, D]
            max_sim = np.maximum(max_sim, np.matmul(vecs, chosen[:, :, None])[:, :, 0])
    return picked


def pool_batch(scores: np.ndarray, size: int) -> np.ndarray:
    """[B, size] column indices of each row's best ``size`` scores (descending)."""
    size = min(size, scores.shape[1])
    top = np.argpartition(-scores, size - 1, axis=1)[:, :size]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def by_score_within_pages(picked: np.ndarray, scores: np.ndarray, page: int) -> np.ndarray:
    """``picked`` [B, k] pool indices (-1 = empty seat, only at a row's end) reordered by
    ``scores`` [B, P] (descending, ties keep their order) within each run of ``page`` seats."""
    if page < 1:
        msg = f"page: expected >= 1 items per page, got {page}"
        raise ValueError(msg)
    b, k = picked.shape
    val = np.where(picked >= 0, np.take_along_axis(scores, np.maximum(picked, 0), 1), -np.inf)
    page_of = np.arange(k) // page
    # one stable sort: by page first, then by score (empty seats last within their page)
    order = np.lexsort((-val, np.broadcast_to(page_of, (b, k))), axis=1)
    return np.take_along_axis(picked, order, 1)
