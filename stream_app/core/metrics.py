"""Evaluation metrics: small, registered units shared by training validation and replay.

Rank convention (every ranking metric): ``rank`` is the 0-based position of the target in
the ranked list (0 = top). ``rank >= k`` is a miss at cutoff ``k``; ``-1`` means the target
was not in the list at all (not retrieved) and is a miss at every cutoff. Each metric takes
many examples at once and returns a one-entry dict such as ``{"ndcg@10": 0.5}``, so results
merge with ``|``. The mean over zero examples is ``nan``.

Full-ranking rank (``rank_of_target`` / ``ranks_of_targets``): a stable sort by
``(-score, item index)``, i.e. ``rank = #(items scoring strictly higher) + #(items scoring
the same with a smaller index)``. Masked items (already-seen history) are left out of the
ranking; the target itself is never masked, even when it appears in the mask (a repeat
consumption is ranked, not an automatic miss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

MetricFn = Callable[..., dict[str, float]]


def _ranks(ranks: npt.ArrayLike) -> npt.NDArray[np.int64]:
    arr = np.asarray(ranks)
    if arr.ndim != 1:
        msg = f"ranks: expected a 1-D array, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            msg = f"ranks: expected integers, got dtype {arr.dtype}"
            raise ValueError(msg)
    out = arr.astype(np.int64)
    if out.min() < -1:
        msg = f"ranks: expected values >= -1 (-1 = not retrieved), got {int(out.min())}"
        raise ValueError(msg)
    return out


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        msg = f"k: expected a positive int, got {k!r}"
        raise ValueError(msg)
    return int(k)


def _mean(values: npt.NDArray[np.float64]) -> float:
    return float(values.mean()) if values.size else math.nan


def _hits(ranks: npt.NDArray[np.int64], k: int | None) -> npt.NDArray[np.bool_]:
    found = ranks >= 0
    return found if k is None else found & (ranks < k)


def hit_rate(ranks: npt.ArrayLike, k: int) -> dict[str, float]:
    """Share of examples whose target is in the top ``k``: ``{"hr@k": x}``."""
    k = _check_k(k)
    r = _ranks(ranks)
    return {f"hr@{k}": _mean(_hits(r, k).astype(np.float64))}


def ndcg_gains(ranks: npt.ArrayLike, k: int) -> npt.NDArray[np.float64]:
    """Per-example NDCG@k with one relevant item: ``1 / log2(rank + 2)`` on a hit, else 0."""
    k = _check_k(k)
    r = _ranks(ranks)
    return np.where(_hits(r, k), 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)


def ndcg(ranks: npt.ArrayLike, k: int) -> dict[str, float]:
    """NDCG@k with one relevant item: the mean of ``ndcg_gains``."""
    return {f"ndcg@{_check_k(k)}": _mean(ndcg_gains(ranks, k))}


def mrr(ranks: npt.ArrayLike, k: int | None = None) -> dict[str, float]:
    """Mean reciprocal rank ``1 / (rank + 1)``, 0 for misses; key ``mrr`` or ``mrr@k``."""
    if k is not None:
        k = _check_k(k)
    r = _ranks(ranks)
    rr = np.where(_hits(r, k), 1.0 / (np.maximum(r, 0) + 1.0), 0.0)
    return {"mrr" if k is None else f"mrr@{k}": _mean(rr)}


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks of ``values``, tied values sharing the average of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # 0-based first position of each distinct value
    avg = starts + (counts + 1) / 2.0
    return avg[inverse.reshape(-1)]


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float]:
    """Binary ROC AUC via the rank-sum (Mann-Whitney) statistic; ties get average ranks.

    A tie between a positive and a negative counts one half. ``nan`` when only one class
    is present.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        msg = f"labels, scores: expected equal 1-D shapes, got {y.shape} and {s.shape}"
        raise ValueError(msg)
    if np.isnan(s).any():
        msg = "scores: expected no NaN, got NaN"
        raise ValueError(msg)
    if not np.isin(y, (0, 1)).all():
        msg = f"labels: expected 0/1 or bool, got values {np.unique(y)[:5].tolist()}"
        raise ValueError(msg)
    pos = y.astype(bool)
    n_pos = int(pos.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return {"auc": math.nan}
    rank_sum = float(_average_ranks(s)[pos].sum())
    return {"auc": (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)}


def catalogue_coverage(lists: Iterable[Iterable[Any]], n_items: int) -> dict[str, float]:
    """Distinct items recommended over all lists / catalogue size ``n_items``."""
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        msg = f"n_items: expected a positive int, got {n_items!r}"
        raise ValueError(msg)
    distinct: set[Any] = set()
    for items in lists:
        distinct.update(np.asarray(items).reshape(-1).tolist())
    return {"coverage": len(distinct) / int(n_items)}


def intra_list_diversity(lists_vectors: Iterable[npt.ArrayLike]) -> dict[str, float]:
    """Mean over lists of the mean pairwise cosine distance ``1 - cos`` of item vectors.

    Each list is an array ``[k, d]``. Lists with fewer than 2 items have no pairs and are
    skipped. A zero vector has cosine 0 with everything (distance 1).
    """
    per_list: list[float] = []
    for i, vectors in enumerate(lists_vectors):
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2:
            msg = f"lists_vectors[{i}]: expected a 2-D array [k, d], got shape {v.shape}"
            raise ValueError(msg)
        k = v.shape[0]
        if k < 2:
            continue
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        unit = v / np.where(norms > 0, norms, 1.0)
        cos = unit @ unit.T
        upper = np.triu_indices(k, 1)
        per_list.append(float((1.0 - cos[upper]).mean()))
    return {"ild": _mean(np.asarray(per_list, dtype=np.float64))}


def category_diversity(
    lists_categories: Iterable[Sequence[Collection[Any]]], kind: str = "disjoint"
) -> dict[str, float]:
    """Mean over lists of the mean pairwise category distance between the list's items.

    Each list is a sequence holding, per item, its collection of categories (e.g. genres).
    ``kind="disjoint"`` (default): a pair scores 1 when the items share no category, else 0,
    so a list's value is its share of item pairs with no category in common (an item with no
    category shares none); key ``category_diversity``.
    ``kind="jaccard"``: a pair scores the Jaccard distance ``1 - |A & B| / |A | B|`` (0 for
    two empty sets); key ``category_diversity_jaccard``. Lists with < 2 items are skipped.
    """
    if kind not in ("disjoint", "jaccard"):
        msg = f"kind: expected 'disjoint' or 'jaccard', got {kind!r}"
        raise ValueError(msg)
    per_list: list[float] = []
    for categories in lists_categories:
        sets = [frozenset(c) for c in categories]
        if len(sets) < 2:
            continue
        dists = []
        for a, b in combinations(sets, 2):
            if kind == "disjoint":
                dists.append(0.0 if a & b else 1.0)
            else:
                union = len(a | b)
                dists.append(1.0 - len(a & b) / union if union else 0.0)
        per_list.append(sum(dists) / len(dists))
    key = "category_diversity" if kind == "disjoint" else "category_diversity_jaccard"
    return {key: _mean(np.asarray(per_list, dtype=np.float64))}


def interest_coverage(
    list_slots: Iterable[Iterable[int]], n_slots_per_user: Iterable[int | Collection[int]]
) -> dict[str, float]:
    """Share of a user's active interest slots represented in the list, averaged over users.

    ``list_slots[u]`` holds, per recommended item, the interest slot it was retrieved for
    (negative = not attributed to a slot). ``n_slots_per_user[u]`` is either the collection
    of the user's active slot ids or an int ``n`` meaning slots ``0..n-1`` are active.
    Users with no active slot are skipped.
    """
    per_user: list[float] = []
    for u, (slots, active) in enumerate(zip(list_slots, n_slots_per_user, strict=True)):
        if isinstance(active, int | np.integer):
            if active < 0:
                msg = f"n_slots_per_user[{u}]: expected >= 0, got {active}"
                raise ValueError(msg)
            active_set = set(range(int(active)))
        else:
            active_set = {int(a) for a in active}
        if not active_set:
            continue
        shown = {int(s) for s in np.asarray(list(slots)).reshape(-1).tolist() if s >= 0}
        per_user.append(len(shown & active_set) / len(active_set))
    return {"interest_coverage": _mean(np.asarray(per_user, dtype=np.float64))}


def novelty(
    lists: Iterable[npt.ArrayLike], item_popularity_prob: npt.ArrayLike
) -> dict[str, float]:
    """Mean self-information ``-log2 p(i)`` of recommended items (mean per list, then over lists).

    ``item_popularity_prob[i]`` is the probability of item index ``i`` (e.g. the share of
    users or interactions with it); it must be in (0, 1] for every recommended item, so
    smooth it (e.g. add-one) when cold items can be recommended.
    """
    p = np.asarray(item_popularity_prob, dtype=np.float64)
    per_list: list[float] = []
    for n, items in enumerate(lists):
        idx = np.asarray(items, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            continue
        if idx.min() < 0 or idx.max() >= p.size:
            msg = f"lists[{n}]: expected item indices in [0, {p.size}), got {idx.tolist()}"
            raise ValueError(msg)
        probs = p[idx]
        if not ((probs > 0) & (probs <= 1)).all():
            bad = int(idx[~((probs > 0) & (probs <= 1))][0])
            msg = f"item_popularity_prob[{bad}]: expected a value in (0, 1], got {p[bad]}"
            raise ValueError(msg)
        per_list.append(float(-np.log2(probs).mean()))
    return {"novelty": _mean(np.asarray(per_list, dtype=np.float64))}


METRICS: dict[str, MetricFn] = {
    "hr": hit_rate,
    "ndcg": ndcg,
    "mrr": mrr,
    "auc": auc,
    "coverage": catalogue_coverage,
    "ild": intra_list_diversity,
    "category_diversity": category_diversity,
    "interest_coverage": interest_coverage,
    "novelty": novelty,
}


def ranking_metrics(ranks: npt.ArrayLike, ks: Iterable[int] = (10, 20)) -> dict[str, float]:
    """``hr@k`` and ``ndcg@k`` for each ``k`` plus ``mrr`` (no cutoff), from target ranks."""
    r = _ranks(ranks)
    out: dict[str, float] = {}
    for k in ks:
        out |= hit_rate(r, k)
        out |= ndcg(r, k)
    out |= mrr(r)
    return out


def _mask_matrix(masks: Any, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    b, n = shape
    if masks is None:
        return np.zeros(shape, dtype=bool)
    if isinstance(masks, np.ndarray) and masks.dtype == np.bool_:
        if masks.shape != shape:
            msg = f"masks: expected a boolean array of shape {shape}, got {masks.shape}"
            raise ValueError(msg)
        return masks.copy()
    rows = list(masks)
    if len(rows) != b:
        msg = f"masks: expected {b} index arrays (one per row), got {len(rows)}"
        raise ValueError(msg)
    out = np.zeros(shape, dtype=bool)
    for i, row in enumerate(rows):
        idx = np.asarray(row, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            got = f"min {idx.min()} max {idx.max()}"
            msg = f"masks[{i}]: expected item indices in [0, {n}), got {got}"
            raise ValueError(msg)
        out[i, idx] = True
    return out


def ranks_of_targets(
    scores: npt.ArrayLike, targets: npt.ArrayLike, masks: Any = None
) -> npt.NDArray[np.int64]:
    """Full-ranking rank of each row's target (see the module docstring for the convention).

    ``scores`` is ``[B, N]``, ``targets`` ``[B]`` item indices, ``masks`` either ``None``, a
    boolean ``[B, N]`` array (True = exclude) or ``B`` arrays of item indices to exclude.
    Returns ``[B]`` int64 ranks.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        msg = f"scores: expected a 2-D array [B, N], got shape {s.shape}"
        raise ValueError(msg)
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    b, n = s.shape
    if t.shape != (b,):
        msg = f"targets: expected {b} indices, got shape {np.asarray(targets).shape}"
        raise ValueError(msg)
    if b == 0:
        return np.zeros(0, dtype=np.int64)
    if t.min() < 0 or t.max() >= n:
        msg = f"targets: expected indices in [0, {n}), got min {t.min()} max {t.max()}"
        raise ValueError(msg)
    if np.isnan(s).any():
        msg = "scores: expected no NaN, got NaN"
        raise ValueError(msg)
    keep = ~_mask_matrix(masks, (b, n))
    rows = np.arange(b)
    keep[rows, t] = True
    target_scores = s[rows, t][:, None]
    higher = (s > target_scores) & keep
    tied_before = (s == target_scores) & keep & (np.arange(n)[None, :] < t[:, None])
    return (higher.sum(axis=1) + tied_before.sum(axis=1)).astype(np.int64)


def rank_of_target(
    scores: npt.ArrayLike, target_index: int, mask_indices: npt.ArrayLike | None = None
) -> int:
    """Full-ranking rank of one target over ``scores [N]``, ``mask_indices`` excluded."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        msg = f"scores: expected a 1-D array [N], got shape {s.shape}"
        raise ValueError(msg)
    masks = None if mask_indices is None else [mask_indices]
    return int(ranks_of_targets(s[None, :], [target_index], masks)[0])
