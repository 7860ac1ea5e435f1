"""Top-n retrieval by dot product over the whole catalogue behind one interface
(``CatalogueIndex``) with live add / replace / remove by store row; the exact index.

* ``ExactRetriever``: one matrix product per column chunk into a reused buffer, then a two-step
  selection: the max of each group of ``GROUP`` columns, the top-n groups (which hold a top-n
  set, ties aside), and the top-n of their members. About 2x faster than product + argpartition
  of every score for 256 queries x 10k items (``bench/retrieval_bench.py``).

The approximate index and the factory that picks one are in ``stream_app.core.ann``. Rows are
the catalogue store's rows; returned rows are -1 (score -inf) where there is nothing: an
invalid query, or fewer than n live items.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

from stream_app.core.retrieval import Retriever

GROUP = 8  # columns per group in the exact selection's first step
CHUNK = 32_768  # item columns scored per matrix product (bounds the score buffer)


class TopN(NamedTuple):
    rows: np.ndarray  # [Q, n] int64 store rows, best first; -1 where none
    scores: np.ndarray  # [Q, n] float32 dot products; -inf where none


class CatalogueIndex(Retriever, Protocol):
    """A ``Retriever`` that also returns scores and follows the catalogue live."""

    dim: int

    def __len__(self) -> int: ...

    def search_scored(self, queries: np.ndarray, valid: np.ndarray, n: int) -> TopN:
        """queries [Q, dim], valid [Q] bool -> top n live rows per valid query by dot product."""
        ...

    def upsert(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows or replace their vectors; visible to the next search."""
        ...

    def remove(self, rows: np.ndarray) -> None:
        """Drop rows (unknown rows are ignored); never returned by a later search."""
        ...

    def memory_bytes(self) -> int: ...


def _along(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``take_along_axis(values, index, 1)`` for 2-D arrays, as one flat take (faster)."""
    offsets = np.arange(values.shape[0])[:, None] * values.shape[1]
    return np.take(values.reshape(-1), index + offsets)


def select_top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of the n largest entries per row of ``scores`` [Q, C], best first.
    -inf entries may be returned (as their column) when a row has fewer than n finite ones."""
    q, c = scores.shape
    n = min(n, c)
    if n <= 0:
        return np.zeros((q, 0), np.int64), np.zeros((q, 0), scores.dtype)
    if c % GROUP == 0 and c >= 4 * GROUP * n:
        ng = c // GROUP  # group j = columns j, j + ng, ..., j + (GROUP - 1) * ng
        best = np.argpartition(scores.reshape(q, GROUP, ng).max(1), ng - n, axis=1)[:, ng - n :]
        cand = (best[:, :, None] + np.arange(GROUP) * ng).reshape(q, -1)
        cand_vals = _along(scores, cand)
        part = np.argpartition(cand_vals, cand.shape[1] - n, axis=1)[:, -n:]
        cols, vals = _along(cand, part), _along(cand_vals, part)
    else:
        if n < c:
            cols = np.argpartition(scores, c - n, axis=1)[:, c - n :]
        else:
            cols = np.tile(np.arange(c), (q, 1))
        vals = _along(scores, cols)
    order = np.argsort(-vals, axis=1, kind="stable")
    return _along(cols, order), _along(vals, order)


def merge_top(rows: np.ndarray, scores: np.ndarray, n: int) -> TopN:
    """Best n of candidate (rows, scores) [Q, M] per query; -inf candidates become row -1."""
    cols, vals = select_top(scores, n)
    out = np.take_along_axis(rows, cols, 1)
    out[~np.isfinite(vals)] = -1
    return TopN(out, vals.astype(np.float32, copy=False))


def placed(n_queries: int, n: int, live: np.ndarray, top: TopN | None) -> TopN:
    """[n_queries, n] results: ``top`` (possibly narrower than n) at the rows ``live``."""
    out = TopN(np.full((n_queries, n), -1, np.int64), np.full((n_queries, n), -np.inf, np.float32))
    if top is not None:
        out.rows[live, : top.rows.shape[1]] = top.rows
        out.scores[live, : top.rows.shape[1]] = top.scores
    return out


def checked_queries(dim: int, queries: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Rows of the valid queries; raises on shapes or values a search cannot take."""
    if queries.ndim != 2 or queries.shape[1] != dim:
        msg = f"queries: expected [Q, {dim}] float32, got shape {queries.shape}"
        raise ValueError(msg)
    if valid.shape != (queries.shape[0],):
        msg = f"valid: expected shape ({queries.shape[0]},), got {valid.shape}"
        raise ValueError(msg)
    if n < 0:
        msg = f"n: expected >= 0 results per query, got {n}"
        raise ValueError(msg)
    live = np.flatnonzero(valid)
    if not np.isfinite(queries[live]).all():
        msg = "queries: a valid query holds NaN or inf (mark it invalid instead)"
        raise ValueError(msg)
    return live


def checked_update(dim: int, rows: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, Any]:
    rows = np.asarray(rows, np.int64).reshape(-1)
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape != (rows.size, dim):
        msg = f"vectors: expected [{rows.size}, {dim}] for {rows.size} rows, got {vectors.shape}"
        raise ValueError(msg)
    if rows.size and rows.min() < 0:
        msg = f"rows: expected store rows >= 0, got {int(rows.min())}"
        raise ValueError(msg)
    if not np.isfinite(vectors).all():
        msg = "vectors: an item vector holds NaN or inf"
        raise ValueError(msg)
    # the last vector given for a row wins
    _, last = np.unique(rows[::-1], return_index=True)
    keep = np.sort(rows.size - 1 - last)
    return rows[keep], vectors[keep]


def grown(arr: np.ndarray, need: int, fill: float | int) -> np.ndarray:
    if need <= arr.shape[0]:
        return arr
    # x1.25: amortised O(1) per added row without doubling a 1M-item catalogue's memory
    new = np.full((max(need, arr.shape[0] * 5 // 4, 1024), *arr.shape[1:]), fill, arr.dtype)
    new[: arr.shape[0]] = arr
    return new


def live_rows(matrix: np.ndarray, alive: np.ndarray | None) -> np.ndarray:
    if alive is None:
        return np.arange(matrix.shape[0], dtype=np.int64)
    if alive.shape != (matrix.shape[0],):
        msg = f"alive: expected shape ({matrix.shape[0]},) like the matrix rows, got {alive.shape}"
        raise ValueError(msg)
    return np.flatnonzero(alive).astype(np.int64)


class IndexBase:
    """The search entry points shared by the indexes: checks, invalid queries, empty index."""

    dim: int

    def __len__(self) -> int:
        raise NotImplementedError

    def search(self, queries: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
        return self.search_scored(queries, valid, n).rows

    def search_scored(self, queries: np.ndarray, valid: np.ndarray, n: int) -> TopN:
        live = checked_queries(self.dim, queries, valid, n)
        if live.size == 0 or n == 0 or len(self) == 0:
            return placed(queries.shape[0], n, live, None)
        q = np.ascontiguousarray(queries[live], np.float32)
        return placed(queries.shape[0], n, live, self._search_live(q, n))

    def _search_live(self, q: np.ndarray, n: int) -> TopN:
        """Top n for the valid queries ``q`` [Q', dim] float32 (possibly fewer columns)."""
        raise NotImplementedError


class ExactRetriever(IndexBase):
    """Exact top-n over a compact copy of the live rows (a removal moves the last live row into
    the hole, so no dead row is ever scored)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vecs = np.zeros((0, dim), np.float32)
        self._row_of = np.zeros(0, np.int64)  # position -> store row
        self._pos_of = np.zeros(0, np.int64)  # store row -> position, -1 when absent
        self._len = 0
        self._buf = np.zeros(0, np.float32)

    @classmethod
    def build(cls, matrix: np.ndarray, alive: np.ndarray | None = None) -> ExactRetriever:
        index = cls(matrix.shape[1])
        rows = live_rows(matrix, alive)
        index.upsert(rows, matrix[rows])
        return index

    def __len__(self) -> int:
        return self._len

    def memory_bytes(self) -> int:
        return self._vecs.nbytes + self._row_of.nbytes + self._pos_of.nbytes + self._buf.nbytes

    def upsert(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows, vectors = checked_update(self.dim, rows, vectors)
        if rows.size == 0:
            return
        self._pos_of = grown(self._pos_of, int(rows.max()) + 1, -1)
        pos = self._pos_of[rows]
        new = pos < 0
        pos[new] = self._len + np.arange(int(new.sum()))
        self._len += int(new.sum())
        cap = -(-self._len // GROUP) * GROUP
        self._vecs = grown(self._vecs, cap, 0.0)
        self._row_of = grown(self._row_of, cap, -1)
        self._vecs[pos] = vectors
        self._row_of[pos] = rows
        self._pos_of[rows] = pos

    def remove(self, rows: np.ndarray) -> None:
        for row in np.unique(np.asarray(rows, np.int64)).tolist():
            if row < 0 or row >= self._pos_of.size or self._pos_of[row] < 0:
                continue
            pos, last = int(self._pos_of[row]), self._len - 1
            moved = int(self._row_of[last])
            self._vecs[pos] = self._vecs[last]
            self._row_of[pos] = moved
            self._pos_of[moved] = pos
            self._pos_of[row] = -1
            self._row_of[last] = -1
            self._len = last

    def _search_live(self, q: np.ndarray, n: int) -> TopN:
        parts = [self._chunk(q, start, n) for start in range(0, self._len, CHUNK)]
        return (
            parts[0]
            if len(parts) == 1
            else merge_top(
                np.hstack([p.rows for p in parts]), np.hstack([p.scores for p in parts]), n
            )
        )

    def _chunk(self, q: np.ndarray, start: int, n: int) -> TopN:
        stop = min(start + CHUNK, self._len)
        width = -(-(stop - start) // GROUP) * GROUP  # the padding columns score -inf
        if self._buf.size < q.shape[0] * width:
            self._buf = np.empty(q.shape[0] * width, np.float32)
        scores = self._buf[: q.shape[0] * width].reshape(q.shape[0], width)
        np.matmul(q, self._vecs[start : start + width].T, out=scores)
        scores[:, stop - start :] = -np.inf
        cols, vals = select_top(scores, n)
        rows = self._row_of[start + cols]
        rows[~np.isfinite(vals)] = -1
        return TopN(rows, vals.astype(np.float32, copy=True))
