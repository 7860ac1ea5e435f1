"""Co-visitation: each item's top-n neighbours by cosine-normalised co-occurrence within a
window of a user's sequence (the item-kNN baseline, kept as a compact table).

Used twice: as a ranker input feature (for each candidate, the recency-weighted sum of its
similarity to the user's last few items) and as a retrieval source (neighbours of the newest
items). Indices are the model version's item index (1..M; 0 = none). Training computes the
feature out-of-fold (see ``model_export.data``) so a training pair never sees its own count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream_app.core.baselines import CoOccurrence

N_RECENT = 5


class CoVisit:
    def __init__(self, nbr: np.ndarray, weight: np.ndarray) -> None:
        self.nbr = nbr.astype(np.int64)  # [M+1, n]
        self.weight = weight.astype(np.float32)  # [M+1, n]

    @property
    def n_items(self) -> int:
        return int(self.nbr.shape[0] - 1)

    @classmethod
    def fit(
        cls, sequences: Sequence[np.ndarray], n_items: int, window: int = 5, top: int = 50
    ) -> CoVisit:
        co = CoOccurrence(n_items + 1, window=window).fit(sequences)
        nbr = np.zeros((n_items + 1, top), np.int64)
        weight = np.zeros((n_items + 1, top), np.float32)
        for i in range(1, n_items + 1):
            cols, sims = co.neighbours(i)
            if cols.size == 0:
                continue
            best = np.argsort(-sims, kind="stable")[:top]
            nbr[i, : best.size] = cols[best]
            weight[i, : best.size] = sims[best]
        return cls(nbr, weight)

    def scores(self, recent: np.ndarray, cand: np.ndarray, n_recent: int = N_RECENT) -> np.ndarray:
        """[B, N]: sum over the newest ``n_recent`` items j of sim(recent_j, cand) / (j + 1).

        recent [B, L] item indices, newest first (0 = none); cand [B, N] item indices."""
        b = recent.shape[0]
        width = self.nbr.shape[0]
        rec = np.clip(recent[:, :n_recent], 0, width - 1)
        nb = self.nbr[rec]  # [B, R, n]
        w = self.weight[rec] / (np.arange(rec.shape[1], dtype=np.float32) + 1)[None, :, None]
        ok = (nb > 0) & (rec > 0)[:, :, None]
        keys = (np.arange(b)[:, None, None] * width + nb)[ok]
        if keys.size == 0:
            return np.zeros(cand.shape, np.float32)
        uniq, inv = np.unique(keys, return_inverse=True)
        sums = np.bincount(inv, weights=w[ok], minlength=uniq.size).astype(np.float32)
        ckeys = np.arange(b)[:, None] * width + np.clip(cand, 0, width - 1)
        pos = np.minimum(np.searchsorted(uniq, ckeys), uniq.size - 1)
        hit = (uniq[pos] == ckeys) & (cand > 0)
        return np.where(hit, sums[pos], 0.0).astype(np.float32)

    def neighbours(self, items: np.ndarray, n: int) -> np.ndarray:
        """[B, r * n] best ``n`` neighbours of each of the given items [B, r] (0 = none)."""
        rec = np.clip(items, 0, self.nbr.shape[0] - 1)
        out = self.nbr[rec][..., :n]
        out[rec == 0] = 0
        return out.reshape(items.shape[0], -1)

    def save(self, path: Path) -> None:
        np.savez(path, nbr=self.nbr.astype(np.int32), weight=self.weight)

    @classmethod
    def load(cls, path: Path) -> CoVisit:
        with np.load(path) as z:
            return cls(z["nbr"], z["weight"])
