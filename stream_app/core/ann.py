"""Approximate top-n retrieval for large catalogues, and the factory choosing exact or ANN.

``AnnRetriever`` is a faiss IVF index with 4-bit PQ fast-scan codes (one sub-quantizer per
dimension, d/2 bytes per item) of each item's residual from its cell centroid: coarse cells
trained by L2 k-means, probed by inner product with the query (the cells a query's best items
sit in; the scan adds the query's score against the cell back to the residual's), then an
exact re-scoring of ``refine * n`` candidates per query with the float vectors kept here, so
returned scores are exact dot products. Chosen by measurement over faiss IVF-Flat / IVF-SQ8 /
IVF-RaBitQ and usearch HNSW (``bench/retrieval_bench.py`` and its docstring). At 1M clustered
items (``make bench``), 256 queries of top 100: recall@100 0.971 at refine 3, 31.9 ms per
batch on one faiss thread and 19.5 ms on two (``serving.ann_threads``). Codes of the items
themselves (faiss's default for inner product) gave 0.940 at refine 4 for the same time;
on those, cheaper settings cost recall (refine 3 0.929, nprobe 24 0.934) and more recall cost
time (nprobe 40 0.953, +25-40 %); faiss's other fast-scan ``implem`` kernels, 4,096 cells or
32 sub-quantizers were no better.

Live updates never retrain: a new item goes into the cell of its nearest centroid (microseconds);
a removal or a replacement marks the item's old faiss entry dead (a tombstone that search maps
to no row) and the dead entries leave the faiss lists in one batched pass once there are
``COMPACT_MIN`` of them (one pass costs a few ms at 1M items, as much as removing one id).
Retraining (new model version, or a catalogue that drifted far) is a new ``build`` off the hot
path, swapped in whole.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stream_app.core.catalogue import ItemStore
from stream_app.core.retrieval import ExactRetriever as StoreExact
from stream_app.core.retrieval_ann import (
    CatalogueIndex,
    ExactRetriever,
    IndexBase,
    TopN,
    checked_update,
    grown,
    live_rows,
    merge_top,
)

ANN_MIN_ITEMS = 30_000  # measured crossover (bench/retrieval_bench.py): exact below, ANN above
COMPACT_MIN = 1024  # tombstones kept before a batched removal from the faiss lists
NPROBE_SHARE = 0.03  # share of the cells probed per query (31 of 1024 at 1M items) ...
NPROBE_MIN = 16  # ... and at least this many (recall@100 0.96 at 30k-100k items)
REFINE = 3  # candidates re-scored exactly per result
TRAIN_PER_CELL = 64  # k-means sample: this many items per cell (all items when fewer)
MIN_ITEMS = 256  # below this an ANN index makes no sense (and k-means has too little data)


def default_cells(n_items: int) -> int:
    """Number of IVF cells: the power of two nearest sqrt(n_items), between 8 and 4096."""
    return int(min(4096, max(8, 2 ** round(math.log2(math.sqrt(max(n_items, 1)))))))


class AnnRetriever(IndexBase):
    """IVF-PQ fast-scan + exact refine over store rows; see the module docstring."""

    def __init__(
        self, index: Any, centroids: np.ndarray, nprobe: int, refine: int, threads: int
    ) -> None:
        self.dim = int(centroids.shape[1])
        self.nprobe, self.refine, self.threads = nprobe, refine, threads
        self._index, self._centroids = index, centroids
        self._quantizer: Any = None
        self._vecs = np.zeros((0, self.dim), np.float32)  # by store row, for the refine step
        self._entry_of = np.zeros(0, np.int64)  # store row -> faiss id, -1 when absent
        self._row_of = np.zeros(0, np.int64)  # faiss id -> store row, -1 when dead
        self._next_entry = 0
        self._dead: list[int] = []
        self._len = 0

    @classmethod
    def build(
        cls,
        matrix: np.ndarray,
        alive: np.ndarray | None = None,
        *,
        cells: int | None = None,
        nprobe: int | None = None,
        refine: int = REFINE,
        threads: int = 1,
        seed: int = 0,
    ) -> AnnRetriever:
        """Train on the live rows of ``matrix`` [N, d] (rows = store rows) and add them all."""
        import faiss

        rows = live_rows(matrix, alive)
        if rows.size < MIN_ITEMS:
            msg = f"matrix: an ANN index needs >= {MIN_ITEMS} live rows, got {rows.size}"
            raise ValueError(msg)
        if refine < 1:
            msg = f"refine: expected >= 1 candidates re-scored per result, got {refine}"
            raise ValueError(msg)
        d = matrix.shape[1]
        cells = cells or default_cells(rows.size)
        nprobe = nprobe or max(NPROBE_MIN, round(cells * NPROBE_SHARE))
        faiss.omp_set_num_threads(max(1, threads))
        rng = np.random.default_rng(seed)
        sample = np.ascontiguousarray(
            matrix[rng.choice(rows, min(rows.size, TRAIN_PER_CELL * cells), replace=False)],
            np.float32,
        )
        kmeans = faiss.Kmeans(d, cells, niter=12, seed=seed, max_points_per_centroid=TRAIN_PER_CELL)
        kmeans.train(sample)
        quantizer = faiss.IndexFlatL2(d)  # items go to the nearest centroid (L2)
        centroids = np.ascontiguousarray(kmeans.centroids, np.float32)
        quantizer.add(centroids)
        index = faiss.IndexIVFPQFastScan(quantizer, d, cells, d, 4, faiss.METRIC_INNER_PRODUCT)
        # codes of each item's residual from its cell's centroid, not of the item itself (faiss
        # leaves this off for inner product): a finer code for the same d/2 bytes; the scan adds
        # the query's score against the cell (search_preassigned's coarse scores) back. At 1M
        # clustered items recall@100 0.940 -> 0.968 (nprobe 31, refine 4), same speed
        index.by_residual = True
        index.train(sample)  # the PQ codebooks (the quantizer is trained already)
        out = cls(
            index, np.ascontiguousarray(kmeans.centroids), min(nprobe, cells), refine, threads
        )
        out._quantizer = quantizer  # faiss does not own it: keep it alive with the index
        out.upsert(rows, matrix[rows])
        return out

    def __len__(self) -> int:
        return self._len

    def memory_bytes(self) -> int:
        """Bytes held: faiss lists (codes + ids) and coarse cells, float vectors, row maps."""
        import faiss

        own = self._vecs.nbytes + self._entry_of.nbytes + self._row_of.nbytes
        return int(faiss.serialize_index(self._index).nbytes) + own

    def upsert(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows, vectors = checked_update(self.dim, rows, vectors)
        if rows.size == 0:
            return
        top = int(rows.max()) + 1
        self._entry_of = grown(self._entry_of, top, -1)
        self._vecs = grown(self._vecs, top, 0.0)
        old = self._entry_of[rows]
        self._bury(old[old >= 0])
        self._len += int((old < 0).sum())
        entries = self._next_entry + np.arange(rows.size, dtype=np.int64)
        self._next_entry += rows.size
        # one spare entry past the last used one: _row_of[-1] is always -1, so a search maps
        # faiss's -1 (fewer results than asked) with one gather
        self._row_of = grown(self._row_of, self._next_entry + 1, -1)
        self._row_of[entries] = rows
        self._entry_of[rows] = entries
        self._vecs[rows] = vectors
        self._index.add_with_ids(np.ascontiguousarray(vectors), entries)
        self._compact_if_due()

    def remove(self, rows: np.ndarray) -> None:
        rows = np.unique(np.asarray(rows, np.int64))
        rows = rows[(rows >= 0) & (rows < self._entry_of.size)]
        rows = rows[self._entry_of[rows] >= 0]
        self._bury(self._entry_of[rows])
        self._len -= rows.size
        self._entry_of[rows] = -1
        self._compact_if_due()

    def _bury(self, entries: np.ndarray) -> None:
        self._row_of[entries] = -1
        self._dead.extend(entries.tolist())

    def _compact_if_due(self) -> None:
        if len(self._dead) >= max(COMPACT_MIN, self._len // 100):
            self.compact()

    def compact(self) -> None:
        """Drop the dead entries from the faiss lists (one pass over the lists)."""
        import faiss

        if self._dead:
            self._index.remove_ids(faiss.IDSelectorBatch(np.array(self._dead, np.int64)))
            self._dead.clear()

    def _search_live(self, q: np.ndarray, n: int) -> TopN:
        import faiss

        faiss.omp_set_num_threads(max(1, self.threads))
        cell_scores = q @ self._centroids.T
        probe = np.argpartition(cell_scores, cell_scores.shape[1] - self.nprobe, axis=1)
        probe = np.ascontiguousarray(probe[:, -self.nprobe :], np.int64)
        self._index.nprobe = self.nprobe
        _, entries = self._index.search_preassigned(
            q, self.refine * n, probe, np.take_along_axis(cell_scores, probe, 1)
        )
        rows = self._row_of[entries]  # -1 -> _row_of[-1] == -1 (see upsert)
        # exact re-scoring in faiss's C++ (-inf for rows < 0): 2-3x a numpy gather + matmul at
        # 1M items, no [queries, refine * n, d] gather buffer, and no gain from sorting rows first
        exact = np.empty(rows.shape, np.float32)
        faiss.fvec_inner_products_by_idx(  # type: ignore[attr-defined]  # not in the stubs
            faiss.swig_ptr(exact),
            faiss.swig_ptr(q),
            faiss.swig_ptr(self._vecs),
            faiss.swig_ptr(rows),
            self.dim,
            rows.shape[0],
            rows.shape[1],
        )
        return merge_top(rows, exact, n)


def make_retriever(
    matrix: np.ndarray,
    alive: np.ndarray | None = None,
    *,
    ann_min_items: int = ANN_MIN_ITEMS,
    threads: int = 1,
) -> CatalogueIndex:
    """Exact index below ``ann_min_items`` live rows, ANN (``AnnRetriever``) from there on."""
    live = int(matrix.shape[0] if alive is None else np.count_nonzero(alive))
    if live < max(ann_min_items, MIN_ITEMS):
        return ExactRetriever.build(matrix, alive)
    return AnnRetriever.build(matrix, alive, threads=threads)


class StoreRetriever:
    """Exact over the store until ``reindex`` builds an ANN index (``stream_app.core.retrieval``
    docstring)."""

    def __init__(
        self,
        store: ItemStore,
        d: int,
        ann_min_items: int = ANN_MIN_ITEMS,
        threads: int = 1,
        exact: Any = None,
    ) -> None:
        self.store, self.d = store, d
        self.ann_min_items, self.threads = ann_min_items, threads
        # the exact search below ann_min_items: numpy here, or one the serving side offers
        # (ONNX Runtime's Gemm + TopK graph, 4-6x faster on CPU: DeviceRetriever); one with a
        # ``reindex`` gets it called too, so its copy of the matrix is refreshed off the loop
        self.exact = exact if exact is not None else StoreExact(store, d)
        self.index: AnnRetriever | None = None

    @property
    def kind(self) -> str:
        return "ann" if self.index is not None else "exact"

    def reindex(self) -> bool:
        """Build the ANN index when the store is large enough (drop it when the catalogue
        shrank below half that); returns whether the retriever changed. Seconds at 1M items:
        call it off the event loop. The store's change log restarts here, so changes made
        while the index is built reach it at the next search."""
        live = len(self.store)
        if self.index is None and live < self.ann_min_items:
            refresh = getattr(self.exact, "reindex", None)
            if refresh is not None:
                refresh()
            return False
        if self.index is None and live >= self.ann_min_items:
            self.store.track_changes()
            size = self.store.size
            matrix = np.array(self.store.feats[:size, : self.d], np.float32)
            alive = self.store.alive[:size].copy()
            self.index = AnnRetriever.build(matrix, alive, threads=self.threads)
            return True
        if self.index is not None and live < self.ann_min_items // 2:
            self.index = None
            self.store.track_changes(on=False)
            return True
        return False

    def search(self, queries: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
        index = self.index
        if index is None:
            return self.exact.search(queries, valid, n)
        rows = self.store.take_changes()
        if rows.size:
            alive = self.store.alive[rows]
            if alive.any():
                index.upsert(rows[alive], self.store.feats[rows[alive], : self.d])
            if (~alive).any():
                index.remove(rows[~alive])
        return index.search(np.ascontiguousarray(queries, np.float32), valid, n)
