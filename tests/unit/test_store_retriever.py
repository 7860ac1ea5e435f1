"""``StoreRetriever``: exact over the live store until ``reindex`` finds it big enough, then
the faiss ANN index, kept in sync with the store's inserts, replacements and deletions at
search time (no rebuild), with the recall of the exact search."""

from __future__ import annotations

import numpy as np

from stream_app.core.ann import StoreRetriever
from stream_app.core.catalogue import ItemStore

D = 16


def store_with(n: int, seed: int = 0) -> tuple[ItemStore, np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, D)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = ItemStore(D, D + 2, capacity=n + 16)
    feats = np.concatenate([vecs, np.zeros((n, 2), np.float32)], 1)
    store.upsert([f"i{j}" for j in range(n)], vecs, feats)
    return store, vecs


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def test_exact_below_the_size_then_ann_with_the_same_answers():
    store, vecs = store_with(2000)
    r = StoreRetriever(store, D, ann_min_items=3000)
    q = vecs[:32] + 0.1
    valid = np.ones(32, bool)
    exact = r.search(q, valid, 20)
    assert not r.reindex() and r.kind == "exact"  # 2,000 < 3,000 items
    r.ann_min_items = 1000
    assert r.reindex() and r.kind == "ann"
    ann = r.search(q, valid, 20)
    assert recall(ann, exact) >= 0.9
    assert not r.reindex()  # already indexed


def test_the_index_follows_inserts_replacements_and_deletes_without_a_rebuild():
    store, vecs = store_with(1200)
    r = StoreRetriever(store, D, ann_min_items=1000)
    assert r.reindex()
    index = r.index
    probe = np.zeros((1, D), np.float32)
    probe[0, 0] = 1.0
    # a new item right on the probe, a replaced item moved onto it, a deleted best item
    feats = np.zeros((1, D + 2), np.float32)
    feats[0, :D] = probe
    store.upsert(["new"], probe, feats)
    store.upsert(["i5"], probe, feats.copy())
    best_before = int(np.argmax(vecs @ probe[0]))
    store.delete(f"i{best_before}")
    top = r.search(probe, np.ones(1, bool), 5)[0]
    ids = [store.ids[x] for x in top if x >= 0]
    assert r.index is index  # updated in place
    assert set(ids[:2]) == {"new", "i5"}
    assert f"i{best_before}" not in ids and None not in ids
    # a catalogue shrunk below half the size goes back to exact search
    for j in range(800):
        store.delete(f"i{j}")
    assert r.reindex() and r.kind == "exact"
    top = r.search(probe, np.ones(1, bool), 3)[0]
    assert store.ids[top[0]] == "new"  # i5 was among the deleted
    assert all(store.alive[x] for x in top)
