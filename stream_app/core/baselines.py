"""Baselines computed identically for training reports and replay: popularity, decayed
popularity (stream protocol) and item co-occurrence (item-kNN), plus the full leave-one-out
MostPop evaluation.

LOO MostPop conventions (``loo_popularity_ranks``), chosen because together they reproduce
the reference numbers on ml-latest-small exactly (HR@10 0.0393, NDCG@10 0.0183, HR@20
0.0689, NDCG@20 0.0258 over 610 users):

- sequences and the split are ``splits.loo_split`` (time order, input order on ties,
  consecutive repeats merged);
- popularity = number of merged interactions per item over EVERY user's train prefix
  (validation and test targets are not counted);
- catalogue = every distinct item id in the input events (items seen only as a target
  included), indexed in sorted item-id (string) order;
- each user with a test target is ranked over the full catalogue with the history masked:
  every item of the train prefix plus the validation item, except the test item itself;
- ties are broken by the lower catalogue index (``metrics.ranks_of_targets``).

Other item orders for the tie-break move the numbers by less than 0.002 (numeric movieId
order: 0.0410 / 0.0188 / 0.0705 / 0.0262), optimistic ties (strictly higher only) give
HR@20 0.0721; counting train+valid as popularity gives HR@10 0.0410, not masking the valid
item NDCG@20 0.0251, counting all interactions HR@10 0.0443.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream_app.core.metrics import ranking_metrics, ranks_of_targets
from stream_app.core.splits import EventLike, loo_split


class _HasItem(Protocol):
    @property
    def item_id(self) -> str: ...


def popularity_scores(
    interactions: Iterable[_HasItem], item_index: Mapping[str, int]
) -> npt.NDArray[np.float64]:
    """Count of the given interactions (or events) per item: ``[len(item_index)]``.

    Each object with an ``item_id`` counts once. Under LOO pass the merged interactions of
    every user's train prefix (``chain(*split.train_sequences().values())``): that is what
    the reference MostPop numbers count. Items missing from ``item_index`` are an error.
    """
    n = len(item_index)
    rows = []
    for x in interactions:
        row = item_index.get(x.item_id)
        if row is None:
            msg = f"item_index: expected an entry for item {x.item_id!r}, got none"
            raise ValueError(msg)
        rows.append(row)
    return np.bincount(np.asarray(rows, dtype=np.int64), minlength=n)[:n].astype(np.float64)


class DecayedPopularity:
    """Exponentially decayed interaction counts for the stream protocol.

    ``scores(now)[i] = sum_e w_e * 2 ** (-(now - t_e) / half_life_s)`` over the updates
    ``(i, t_e, w_e)`` of item ``i``. Weights are stored relative to a reference time, so
    ``update`` is O(1); the reference moves forward (one O(N) rescale) only when the stored
    values would overflow. Item rows grow on demand. ``now`` should not precede the updates
    (an update older than ``now`` decays, a newer one grows).
    """

    _MAX_EXPONENT = 600.0  # natural-log units; exp(600) ~ 1e260 stays finite in float64

    def __init__(self, half_life_s: float, n_items: int = 0) -> None:
        if not (isinstance(half_life_s, int | float) and half_life_s > 0):
            msg = f"half_life_s: expected a positive number, got {half_life_s!r}"
            raise ValueError(msg)
        self.half_life_s = float(half_life_s)
        self._rate = math.log(2.0) / self.half_life_s
        self._n = max(int(n_items), 0)
        self._weights = np.zeros(self._n, dtype=np.float64)
        self._ref: float | None = None

    @property
    def n_items(self) -> int:
        """Rows known so far: the constructor's ``n_items`` or the largest index seen + 1."""
        return self._n

    def _grow(self, n: int) -> None:
        if n > self._weights.size:
            grown = np.zeros(max(n, 2 * self._weights.size), dtype=np.float64)
            grown[: self._weights.size] = self._weights
            self._weights = grown
        self._n = max(self._n, n)

    def update(self, item_idx: int, ts: float, weight: float = 1.0) -> None:
        """Add ``weight`` for item ``item_idx`` at epoch seconds ``ts``."""
        if item_idx < 0:
            msg = f"item_idx: expected >= 0, got {item_idx}"
            raise ValueError(msg)
        if not math.isfinite(ts):
            msg = f"ts: expected finite epoch seconds, got {ts}"
            raise ValueError(msg)
        if self._ref is None:
            self._ref = float(ts)
        exponent = self._rate * (ts - self._ref)
        if exponent > self._MAX_EXPONENT:
            self._weights *= math.exp(-exponent)
            self._ref = float(ts)
            exponent = 0.0
        self._grow(item_idx + 1)
        self._weights[item_idx] += weight * math.exp(exponent)

    def scores(self, now_ts: float, n_items: int | None = None) -> npt.NDArray[np.float64]:
        """Decayed counts at ``now_ts``: ``[n_items]`` (zero-padded / cut when given)."""
        n = self._n if n_items is None else int(n_items)
        out = np.zeros(n, dtype=np.float64)
        m = min(n, self._n)
        if self._ref is not None and m:
            out[:m] = self._weights[:m] * math.exp(-self._rate * (now_ts - self._ref))
        return out


class CoOccurrence:
    """Item-kNN from co-occurrence within a window of subsequent items (numpy CSR).

    ``fit`` counts, for each position of each user's sequence, the pairs (item, one of the
    next ``window`` items); ``symmetric=True`` adds both directions, ``False`` only
    "j follows i". Pairs of an item with itself are skipped. Each count is divided by
    ``sqrt(pop_i * pop_j)``, ``pop`` being the item's occurrences in the fitted sequences
    (cosine normalisation).
    """

    def __init__(self, n_items: int, window: int = 5, symmetric: bool = True) -> None:
        if n_items < 0:
            msg = f"n_items: expected >= 0, got {n_items}"
            raise ValueError(msg)
        if window < 1:
            msg = f"window: expected >= 1, got {window}"
            raise ValueError(msg)
        self.n_items = int(n_items)
        self.window = int(window)
        self.symmetric = symmetric
        self.indptr = np.zeros(self.n_items + 1, dtype=np.int64)
        self.indices = np.zeros(0, dtype=np.int64)
        self.data = np.zeros(0, dtype=np.float64)
        self.popularity = np.zeros(self.n_items, dtype=np.float64)

    def fit(self, sequences: Iterable[Sequence[int] | np.ndarray]) -> CoOccurrence:
        """Build the matrix from item-index sequences (one per user, time order)."""
        seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        n = self.n_items
        items = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= n):
            msg = f"sequences: expected item indices in [0, {n}), got {items.min()}..{items.max()}"
            raise ValueError(msg)
        owner = np.repeat(np.arange(len(seqs)), [s.size for s in seqs])
        self.popularity = np.bincount(items, minlength=n).astype(np.float64)
        heads, tails = [], []
        for d in range(1, self.window + 1):
            if d >= items.size:
                break
            a, b = items[:-d], items[d:]
            keep = (owner[:-d] == owner[d:]) & (a != b)
            heads.append(a[keep])
            tails.append(b[keep])
            if self.symmetric:
                heads.append(b[keep])
                tails.append(a[keep])
        if heads:
            codes = np.concatenate(heads) * n + np.concatenate(tails)
        else:
            codes = np.zeros(0, dtype=np.int64)
        pairs, counts = np.unique(codes, return_counts=True)
        rows, cols = pairs // max(n, 1), pairs % max(n, 1)
        self.indices = cols.astype(np.int64)
        self.data = counts / np.sqrt(self.popularity[rows] * self.popularity[cols])
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        return self

    def neighbours(self, item_idx: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Neighbour item indices of ``item_idx`` and their similarities (empty if unknown)."""
        if not 0 <= item_idx < self.n_items:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        lo, hi = self.indptr[item_idx], self.indptr[item_idx + 1]
        return self.indices[lo:hi], self.data[lo:hi]

    def scores(
        self,
        history_item_indices: Sequence[int] | npt.NDArray[np.int64],
        recency_weighted: bool = True,
        n_recent: int = 5,
    ) -> npt.NDArray[np.float64]:
        """Sum of the neighbour rows of the last ``n_recent`` history items (the input is in
        time order, most recent last). With ``recency_weighted`` the j-th most recent
        item (j = 0 for the latest) weighs ``1 / (j + 1)``, else 1. Items outside the fitted
        range (new items) contribute nothing. Returns ``[n_items]``."""
        hist = np.asarray(history_item_indices, dtype=np.int64).reshape(-1)
        if hist.size and hist.min() < 0:
            msg = f"history_item_indices: expected indices >= 0, got {int(hist.min())}"
            raise ValueError(msg)
        if n_recent < 1:
            msg = f"n_recent: expected >= 1, got {n_recent}"
            raise ValueError(msg)
        recent = hist[-n_recent:][::-1]
        out = np.zeros(self.n_items, dtype=np.float64)
        for j, item in enumerate(recent.tolist()):
            cols, sims = self.neighbours(item)
            out[cols] += sims * (1.0 / (j + 1) if recency_weighted else 1.0)
        return out


def loo_popularity_ranks(
    events: Iterable[EventLike], batch_size: int = 1024
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """LOO MostPop test ranks (conventions in the module docstring) and their user ids."""
    event_list = list(events)
    split = loo_split(event_list)
    catalogue = sorted({e.item_id for e in event_list})
    item_index = {item: i for i, item in enumerate(catalogue)}
    train = split.train_sequences()
    pop = popularity_scores(chain.from_iterable(train.values()), item_index)
    users: list[str] = []
    targets: list[int] = []
    masks: list[list[int]] = []
    for user, s in split.users.items():
        if s.test is not None:
            users.append(user)
            targets.append(item_index[s.test.item_id])
            masks.append([item_index[x.item_id] for x in s.history_for_test()])
    ranks = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(users), batch_size):
        stop = min(start + batch_size, len(users))
        scores = np.broadcast_to(pop, (stop - start, pop.size))
        ranks.append(ranks_of_targets(scores, targets[start:stop], masks[start:stop]))
    return np.concatenate(ranks), users


def loo_popularity_eval(
    events: Iterable[EventLike], ks: Iterable[int] = (10, 20)
) -> dict[str, float]:
    """Full LOO evaluation of MostPop: ``metrics.ranking_metrics`` of ``loo_popularity_ranks``."""
    ranks, _ = loo_popularity_ranks(events)
    return ranking_metrics(ranks, ks)
