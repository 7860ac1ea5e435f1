"""Exact and ANN catalogue retrieval: exact equals brute force (ties, dead rows, n beyond the
live items, invalid queries), ANN recall on a clustered set, live add / replace / remove seen by
the next search, no dead row ever returned, clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.core.ann import AnnRetriever, make_retriever
from stream_app.core.retrieval_ann import ExactRetriever, TopN, select_top


def brute(matrix: np.ndarray, alive: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """Sorted top-n scores per query over the live rows (-inf padded)."""
    s = np.where(alive[None, :], q @ matrix.T, -np.inf)
    out = np.full((len(q), n), -np.inf, np.float32)
    top = -np.sort(-s, axis=1)[:, :n]
    out[:, : top.shape[1]] = top
    return out


def check_exact(
    got: TopN, matrix: np.ndarray, alive: np.ndarray, q: np.ndarray, valid: np.ndarray, n: int
) -> None:
    want = brute(matrix, alive, q, n)
    for i in range(len(q)):
        rows, scores = got.rows[i], got.scores[i]
        if not valid[i]:
            assert (rows == -1).all() and np.isneginf(scores).all()
            continue
        np.testing.assert_allclose(scores, want[i], rtol=1e-5, atol=1e-5)
        found = rows[rows >= 0]
        assert len(set(found.tolist())) == found.size, "a row returned twice"
        assert alive[found].all(), "a dead row was returned"
        np.testing.assert_allclose(matrix[found] @ q[i], scores[: found.size], rtol=1e-5, atol=1e-5)
        assert (rows[found.size :] == -1).all()


def test_select_top_grouped_path_equals_sort() -> None:
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((7, 8 * 4 * 8 * 10)).astype(np.float32)  # takes the grouped path
    cols, vals = select_top(scores, 10)
    np.testing.assert_array_equal(vals, -np.sort(-scores, axis=1)[:, :10])
    np.testing.assert_array_equal(np.take_along_axis(scores, cols, 1), vals)


@pytest.mark.parametrize("n_items", [5, 300, 3000, 70_000])  # 70k spans three column chunks
def test_exact_equals_brute_force_with_dead_rows_and_invalid_queries(n_items: int) -> None:
    rng = np.random.default_rng(n_items)
    matrix = rng.standard_normal((n_items, 16)).astype(np.float32)
    alive = rng.random(n_items) > 0.3
    q = rng.standard_normal((9, 16)).astype(np.float32)
    valid = np.array([True, False] + [True] * 7)
    index = ExactRetriever.build(matrix, alive)
    assert len(index) == alive.sum()
    for n in (1, 25, 100):
        check_exact(index.search_scored(q, valid, n), matrix, alive, q, valid, n)
    np.testing.assert_array_equal(
        index.search(q, valid, 25), index.search_scored(q, valid, 25).rows
    )


def test_exact_ties_and_n_beyond_live_items() -> None:
    matrix = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [2, 0]], np.float32)
    alive = np.array([True, True, True, False, True])
    index = ExactRetriever.build(matrix, alive)
    got = index.search_scored(np.array([[1, 0]], np.float32), np.array([True]), 6)
    assert got.rows[0, 0] == 4
    assert set(got.rows[0, 1:3].tolist()) == {0, 1}  # the tie, either order
    assert got.rows[0, 3] == 2 and (got.rows[0, 4:] == -1).all()
    np.testing.assert_array_equal(got.scores[0, :4], [2, 1, 1, 0])
    assert np.isneginf(got.scores[0, 4:]).all()


def test_exact_live_updates_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((500, 8)).astype(np.float32)
    alive = np.ones(500, bool)
    index = ExactRetriever.build(matrix, alive)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    valid = np.ones(4, bool)
    for step in range(20):
        gone = rng.choice(matrix.shape[0], 15, replace=False)
        index.remove(gone)
        alive[gone] = False
        new = np.arange(matrix.shape[0], matrix.shape[0] + 10)
        matrix = np.vstack([matrix, rng.standard_normal((10, 8)).astype(np.float32)])
        alive = np.concatenate([alive, np.ones(10, bool)])
        index.upsert(new, matrix[new])
        back = rng.choice(np.flatnonzero(~alive), 5, replace=False)  # revived rows
        matrix[back] = rng.standard_normal((5, 8)).astype(np.float32)
        alive[back] = True
        index.upsert(back, matrix[back])
        assert len(index) == alive.sum(), f"step {step}"
        check_exact(index.search_scored(q, valid, 30), matrix, alive, q, valid, 30)


def clustered_set(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.standard_normal((200, d)).astype(np.float32)
    label = rng.integers(0, 200, n)
    items = centres[label] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    queries = centres[rng.integers(0, 200, 64)] + 0.3 * rng.standard_normal((64, d))
    return items, queries.astype(np.float32)


@pytest.fixture(scope="module")
def ann_case() -> tuple[np.ndarray, np.ndarray, AnnRetriever]:
    rng = np.random.default_rng(7)
    items, queries = clustered_set(rng, 20_000, 32)
    return items, queries, AnnRetriever.build(items)


def test_the_codes_are_of_residuals_so_the_scan_alone_ranks_well() -> None:
    """With refine 1 (no exact re-scoring slack) recall is the codes' own: 0.91 here with codes
    of each item's residual from its cell centroid, 0.83 with codes of the items themselves."""
    rng = np.random.default_rng(7)
    items, queries = clustered_set(rng, 20_000, 32)
    valid = np.ones(len(queries), bool)
    exact = ExactRetriever.build(items).search(queries, valid, 50)
    got = AnnRetriever.build(items, refine=1).search(queries, valid, 50)
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(got, exact, strict=True)])
    assert recall >= 0.88, recall


def test_ann_recall_on_clustered_set(ann_case: tuple[np.ndarray, np.ndarray, AnnRetriever]) -> None:
    items, queries, ann = ann_case
    valid = np.ones(len(queries), bool)
    exact = ExactRetriever.build(items).search(queries, valid, 50)
    got = ann.search_scored(queries, valid, 50)
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(got.rows, exact, strict=True)])
    assert recall >= 0.95, recall
    rows = got.rows[got.rows >= 0]
    np.testing.assert_allclose(  # returned scores are exact dot products, best first
        got.scores[got.rows >= 0],
        np.einsum("qd,qkd->qk", queries, items[np.maximum(got.rows, 0)])[got.rows >= 0],
        rtol=1e-4,
        atol=1e-4,
    )
    assert rows.size == got.rows.size
    assert (np.diff(got.scores, axis=1) <= 0).all()


def test_ann_add_replace_remove_visible_in_next_search() -> None:
    rng = np.random.default_rng(11)
    items, queries = clustered_set(rng, 5000, 16)
    ann = AnnRetriever.build(items)
    one, valid = queries[:1], np.ones(1, bool)
    best = ann.search(one, valid, 10)[0]
    ann.remove(best[:3])  # removed: never returned again
    after = ann.search(one, valid, 10)[0]
    assert not set(best[:3].tolist()) & set(after.tolist())
    assert len(ann) == 5000 - 3
    ann.upsert(np.array([9000]), 5 * one)  # added past the end: found first
    assert ann.search(one, valid, 10)[0, 0] == 9000
    ann.upsert(np.array([9000]), -5 * one)  # replaced: no longer found, counted once
    assert 9000 not in ann.search(one, valid, 50)[0]
    assert len(ann) == 5000 - 2
    ann.upsert(np.array([best[0]]), 5 * one)  # a removed row revived with a new vector
    assert ann.search(one, valid, 10)[0, 0] == best[0]


def test_ann_asked_for_more_than_the_live_items_pads_with_minus_one() -> None:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((1200, 16)).astype(np.float32)
    ann = AnnRetriever.build(items, cells=8, nprobe=8)  # every cell probed: all live rows seen
    dead = np.arange(0, 1200, 3)
    ann.remove(dead)
    got = ann.search_scored(rng.standard_normal((5, 16)).astype(np.float32), np.ones(5, bool), 900)
    assert ((got.rows == -1).sum(1) == 100).all()  # 800 live rows, all found, then -1
    assert not np.isin(got.rows, dead).any()
    assert all(len(set(r[r >= 0].tolist())) == 800 for r in got.rows)


def test_ann_compaction_keeps_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stream_app.core.ann.COMPACT_MIN", 50)
    rng = np.random.default_rng(5)
    items, queries = clustered_set(rng, 4000, 16)
    ann = AnnRetriever.build(items)
    alive = np.ones(4000, bool)
    gone = rng.choice(4000, 400, replace=False)
    for row in gone:  # one at a time, as the catalogue topic delivers them
        ann.remove(np.array([row]))
    alive[gone] = False
    assert len(ann._dead) < 50  # compacted along the way
    got = ann.search(queries, np.ones(len(queries), bool), 40)
    assert alive[got[got >= 0]].all()
    assert (got >= 0).all()


def test_factory_picks_by_size() -> None:
    rng = np.random.default_rng(2)
    small = rng.standard_normal((2000, 8)).astype(np.float32)
    assert isinstance(make_retriever(small, ann_min_items=5000), ExactRetriever)
    assert isinstance(make_retriever(small, ann_min_items=1000), AnnRetriever)
    alive = np.zeros(2000, bool)
    alive[:900] = True  # live rows count, not the matrix height
    assert isinstance(make_retriever(small, alive, ann_min_items=1000), ExactRetriever)


@pytest.mark.parametrize("kind", ["exact", "ann"])
def test_bad_input_names_the_field(kind: str) -> None:
    rng = np.random.default_rng(4)
    items = rng.standard_normal((1000, 8)).astype(np.float32)
    index = ExactRetriever.build(items) if kind == "exact" else AnnRetriever.build(items)
    q = rng.standard_normal((2, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"queries: expected \[Q, 8\]"):
        index.search(q[:, :4], np.ones(2, bool), 5)
    with pytest.raises(ValueError, match="valid: expected shape"):
        index.search(q, np.ones(3, bool), 5)
    bad = q.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        index.search(bad, np.ones(2, bool), 5)
    assert (index.search(bad, np.array([True, False]), 5)[1] == -1).all()  # invalid: skipped
    with pytest.raises(ValueError, match=r"vectors: expected \[1, 8\]"):
        index.upsert(np.array([3]), np.ones((1, 7), np.float32))
    with pytest.raises(ValueError, match="rows: expected store rows >= 0"):
        index.upsert(np.array([-1]), np.ones((1, 8), np.float32))
    with pytest.raises(ValueError, match="an ANN index needs"):
        AnnRetriever.build(items[:10])
