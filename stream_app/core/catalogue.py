"""In-memory catalogue for one model version: per item its pretrained text vector (the
interest space), its item-tower features (ranker + retrieval), categories, appearance time
and a decayed popularity. Rows are stable; deleted rows are marked dead and reused.

Vectors and features of a store always come from the same model version: a model swap
builds a new store and swaps both together (see ``stream_app.serving.model``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_FEATURES = 2


def item_numeric(prices: Sequence[float | None]) -> np.ndarray:
    """[N, 2] numeric item-tower inputs: log1p(price), has_price (0, 0 when unknown)."""
    out = np.zeros((len(prices), NUM_FEATURES), np.float32)
    for i, p in enumerate(prices):
        if p is not None:
            out[i] = (np.log1p(max(float(p), 0.0)), 1.0)
    return out


class ItemStore:
    def __init__(
        self,
        text_dim: int,
        feat_dim: int,
        capacity: int = 1024,
        pop_half_life_s: float = 3 * 24 * 3600.0,
    ) -> None:
        self.text_dim, self.feat_dim = text_dim, feat_dim
        self.ids: list[str | None] = []
        self.row: dict[str, int] = {}
        self.text = np.zeros((capacity, text_dim), np.float32)
        self.feats = np.zeros((capacity, feat_dim), np.float32)
        self.alive = np.zeros(capacity, bool)
        self.added_ts = np.zeros(capacity, np.float64)
        self.categories: list[tuple[str, ...]] = []
        self.pop = np.zeros(capacity, np.float64)  # decayed counts, in units at pop_ref
        self.pop_ref = 0.0
        self.pop_half_life_s = pop_half_life_s
        self._free: list[int] = []
        self.version = 0  # bumps on every change (caches key on it)
        self._changed: list[np.ndarray] | None = None  # rows changed, while an index tracks

    def __len__(self) -> int:
        return len(self.row)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.row

    @property
    def size(self) -> int:
        """Rows in use (alive or dead); arrays are valid up to here."""
        return len(self.ids)

    def _grow(self, need: int) -> None:
        cap = self.text.shape[0]
        if need <= cap:
            return
        new = max(need, cap * 2)
        for name in ("text", "feats", "alive", "added_ts", "pop"):
            old = getattr(self, name)
            arr = np.zeros((new, *old.shape[1:]), old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    def upsert(
        self,
        ids: Sequence[str],
        text_vecs: np.ndarray,
        feats: np.ndarray,
        categories: Sequence[Sequence[str]] | None = None,
        added_ts: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Insert or replace items; returns their rows."""
        if text_vecs.shape != (len(ids), self.text_dim) or feats.shape != (len(ids), self.feat_dim):
            msg = (
                f"upsert: expected text [{len(ids)}, {self.text_dim}] and feats "
                f"[{len(ids)}, {self.feat_dim}], got {text_vecs.shape} and {feats.shape}"
            )
            raise ValueError(msg)
        rows = np.empty(len(ids), np.int64)
        for n, item in enumerate(ids):
            r = self.row.get(item)
            if r is None:
                if self._free:
                    r = self._free.pop()
                    self.ids[r] = item
                    self.categories[r] = ()
                    self.pop[r] = 0.0
                else:
                    r = len(self.ids)
                    self._grow(r + 1)
                    self.ids.append(item)
                    self.categories.append(())
                self.row[item] = r
            rows[n] = r
        self.text[rows] = text_vecs
        self.feats[rows] = feats
        self.alive[rows] = True
        if categories is not None:
            for row, cats in zip(rows.tolist(), categories, strict=True):
                self.categories[row] = tuple(cats)
        if added_ts is not None:
            self.added_ts[rows] = np.asarray(added_ts, np.float64)
        self.version += 1
        if self._changed is not None:
            self._changed.append(rows.copy())
        return rows

    def delete(self, item_id: str) -> bool:
        r = self.row.pop(item_id, None)
        if r is None:
            return False
        self.alive[r] = False
        self.ids[r] = None
        self._free.append(r)
        self.version += 1
        if self._changed is not None:
            self._changed.append(np.array([r], np.int64))
        return True

    def track_changes(self, on: bool = True) -> None:
        """Start (afresh) or stop logging changed rows, for the one retrieval index kept in
        sync with this store (``core.retrieval.StoreRetriever``)."""
        self._changed = [] if on else None

    def take_changes(self) -> np.ndarray:
        """Rows inserted, replaced or deleted since tracking started or the last call (each
        once); clears the log."""
        changed = self._changed or []
        if self._changed is not None:
            self._changed = []
        return np.unique(np.concatenate(changed)) if changed else np.zeros(0, np.int64)

    def rows_for(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of ``ids``; -1 for unknown items."""
        get = self.row.get
        return np.fromiter((get(i, -1) for i in ids), np.int64, len(ids))

    def id_of(self, row: int) -> str:
        item = self.ids[row]
        if item is None:
            msg = f"row {row}: expected a live catalogue row, got a deleted one"
            raise KeyError(msg)
        return item

    # -- popularity (time-decayed, O(1) per event) --------------------------------------
    def bump(self, row: int, ts: float, weight: float = 1.0) -> None:
        """Stored value s: popularity at time t is s * 0.5**((t - pop_ref) / half_life), so an
        event adds weight * 2**((ts - pop_ref) / half_life); rebased before it can overflow."""
        hl = self.pop_half_life_s
        if ts > self.pop_ref + 20 * hl:
            self.pop[: self.size] *= 0.5 ** ((ts - self.pop_ref) / hl)
            self.pop_ref = ts
        self.pop[row] += weight * 2.0 ** ((ts - self.pop_ref) / hl)

    def popular(self, n: int, fresh_since: float | None = None) -> np.ndarray:
        """Rows of the n most popular live items (optionally only those added since)."""
        size = self.size
        score = np.where(self.alive[:size], self.pop[:size], -np.inf)
        if fresh_since is not None:
            score = np.where(self.added_ts[:size] >= fresh_since, score, -np.inf)
        n = min(n, int(np.isfinite(score).sum()))
        if n <= 0:
            return np.zeros(0, np.int64)
        top = np.argpartition(-score, n - 1)[:n]
        return top[np.argsort(-score[top], kind="stable")]
