"""Candidate retrieval behind one small interface, so an ANN index can replace it.

``ExactRetriever`` does a matrix product of the users' query vectors with every live item's
retrieval vector and keeps the top per query (argpartition): exact, and the fastest below
``ANN_MIN_ITEMS`` live items (``bench/retrieval_bench.py``).

``stream_app.core.ann.StoreRetriever`` (what the engine uses; the serving side gives it ONNX
Runtime's Gemm + TopK graph as its exact stage, faster than this one) is exact until ``reindex``
(called off the hot path: a model swap's store build, a catalogue update) finds the store at
or above ``ann_min_items`` live items and builds the faiss IVF-PQ index from it; from then on
each search first applies the store's changes since the last one to the index (inserts into the
nearest cell, tombstones for removals: microseconds per item, never a retrain) and searches it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from stream_app.core.catalogue import ItemStore


class Retriever(Protocol):
    def search(self, queries: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
        """queries [Q, d], valid [Q] bool -> rows [Q, n] (-1 where nothing / invalid)."""
        ...


class ExactRetriever:
    """Reads the store's arrays at search time (they are reallocated as the catalogue grows):
    the retrieval vector of an item is its first ``d`` item-tower features."""

    def __init__(self, store: ItemStore, d: int) -> None:
        self.store, self.d = store, d

    def search(self, queries: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
        size = self.store.size
        out = np.full((queries.shape[0], n), -1, np.int64)
        rows = np.flatnonzero(valid)
        if size == 0 or rows.size == 0 or n <= 0:
            return out
        scores = queries[rows] @ self.store.feats[:size, : self.d].T  # [Q', size]
        scores[:, ~self.store.alive[:size]] = -np.inf
        m = min(n, size)
        top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        top_scores = np.take_along_axis(scores, top, 1)
        top[~np.isfinite(top_scores)] = -1
        out[rows, :m] = top
        return out
