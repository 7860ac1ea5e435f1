"""``DeviceRetriever`` on the CPU provider (the same code runs on CUDA): the numpy exact
retriever's rows and scores, dead items never returned, invalid queries -1, a store that changed
is uploaded again; the committed graph is what the script generates and ships with the package;
the engine uses a retriever the model offers and its own otherwise; a CPU version offers the
core's StoreRetriever with this graph as its exact stage."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from stream_app.core.ann import StoreRetriever
from stream_app.core.catalogue import ItemStore
from stream_app.core.engine import Bundle
from stream_app.core.retrieval import ExactRetriever
from stream_app.serving.device_retrieval import DeviceRetriever, graph_bytes
from stream_app.serving.model import ServingVersion
from stream_app.serving.sessions import ModelLoadError, _gpu_present

ROOT = Path(__file__).resolve().parents[2]
D, F = 16, 18


def unit(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_store(n: int, seed: int = 0) -> ItemStore:
    rng = np.random.default_rng(seed)
    store = ItemStore(4, F, capacity=8)
    feats = np.concatenate([unit(rng, n), rng.standard_normal((n, 2)).astype(np.float32)], 1)
    store.upsert([f"i{j}" for j in range(n)], np.zeros((n, 4), np.float32), feats)
    return store


def exact_scores(store: ItemStore, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.einsum("qd,qnd->qn", q, store.feats[np.maximum(rows, 0), :D])


def test_same_rows_and_scores_as_the_numpy_exact_retriever():
    store = make_store(500)
    for j in range(0, 500, 7):
        store.delete(f"i{j}")
    q = unit(np.random.default_rng(1), 40)
    valid = np.ones(40, bool)
    valid[[3, 17]] = False
    dev = DeviceRetriever(store, D, "cpu", threads=1)
    got = dev.search(q, valid, 30)
    want = ExactRetriever(store, D).search(q, valid, 30)
    np.testing.assert_array_equal(got, want)
    assert (got[[3, 17]] == -1).all()
    dead = np.flatnonzero(~store.alive[: store.size])
    assert not np.isin(got, dead).any()
    scores, rows = dev.topn(q, 30)
    np.testing.assert_allclose(scores, exact_scores(store, q, rows), atol=1e-4)
    assert dev.kind == "exact-cpu"


def test_fewer_live_items_than_asked_pads_with_minus_one():
    store = make_store(12)
    for j in range(6):
        store.delete(f"i{j}")
    q = unit(np.random.default_rng(2), 3)
    got = DeviceRetriever(store, D, "cpu").search(q, np.ones(3, bool), 20)
    assert got.shape == (3, 20)
    np.testing.assert_array_equal(got, ExactRetriever(store, D).search(q, np.ones(3, bool), 20))
    assert (np.sort(got[:, :6], 1) == np.arange(6, 12)).all()
    assert (got[:, 6:] == -1).all()


def test_nothing_to_search():
    store = ItemStore(4, F)
    dev = DeviceRetriever(store, D, "cpu")
    q = unit(np.random.default_rng(3), 2)
    assert (dev.search(q, np.ones(2, bool), 5) == -1).all()
    store = make_store(10)
    dev = DeviceRetriever(store, D, "cpu")
    assert (dev.search(q, np.zeros(2, bool), 5) == -1).all()
    assert dev.search(q, np.ones(2, bool), 0).shape == (2, 0)


def test_a_changed_store_is_uploaded_again():
    store = make_store(100)
    dev = DeviceRetriever(store, D, "cpu")
    assert dev.reindex() is False and dev.uploads == 1
    assert dev.sync() is False and dev.uploads == 1  # unchanged: nothing to upload
    q = unit(np.random.default_rng(4), 1)
    target = np.concatenate([q[0], [0.0, 0.0]]).astype(np.float32)[None] * 2.0  # best match
    rows = store.upsert(["new"], np.zeros((1, 4), np.float32), target)  # grows the store
    assert dev.search(q, np.ones(1, bool), 3)[0, 0] == rows[0]
    assert dev.uploads == 2
    store.delete("new")  # same size, a dead row: the resident bias is updated
    got = dev.search(q, np.ones(1, bool), 3)
    assert rows[0] not in got and dev.uploads == 3
    np.testing.assert_array_equal(got, ExactRetriever(store, D).search(q, np.ones(1, bool), 3))


def test_queries_of_the_wrong_size_are_refused():
    dev = DeviceRetriever(make_store(10), D, "cpu")
    with pytest.raises(ValueError, match=r"queries: expected \[Q, 16\]"):
        dev.topn(np.zeros((2, D + 1), np.float32), 3)


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present: CUDA may start")
def test_cuda_without_a_gpu_is_refused_loudly():
    with pytest.raises(ModelLoadError):
        DeviceRetriever(make_store(10), D, "cuda")


def test_the_committed_graph_is_what_the_script_generates(tmp_path: Path):
    pytest.importorskip("onnx")
    out = tmp_path / "retrieve.onnx"
    script = ROOT / "scripts" / "make_retrieval_graph.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, timeout=60)
    committed = ROOT / "stream_app" / "serving" / "graphs" / "retrieve.onnx"
    assert out.read_bytes() == committed.read_bytes() == graph_bytes()


def test_the_package_ships_the_graph():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "graphs/*.onnx" in data["package-data"]["stream_app.serving"]


class FakeModel:
    d = D

    def __init__(self, offer: bool) -> None:
        self.offer = offer

    def retriever_for(self, store: ItemStore, ann_threads: int = 1) -> DeviceRetriever | None:
        return DeviceRetriever(store, self.d, "cpu") if self.offer else None


def test_the_engine_uses_the_retriever_a_model_offers():
    store = make_store(20)
    assert isinstance(Bundle(FakeModel(True), store).retriever, DeviceRetriever)  # type: ignore[type-var]
    assert isinstance(Bundle(FakeModel(False), store).retriever, StoreRetriever)  # type: ignore[type-var]


def _cpu_version() -> ServingVersion:
    version = ServingVersion.__new__(ServingVersion)
    version.on_cuda, version.d, version.threads = False, D, 1
    return version


def test_a_version_on_cpu_offers_the_store_retriever_with_the_ort_graph_as_its_exact_stage():
    store = make_store(400)
    for j in range(0, 400, 5):
        store.delete(f"i{j}")
    offered = _cpu_version().retriever_for(store)
    assert isinstance(offered, StoreRetriever) and isinstance(offered.exact, DeviceRetriever)
    assert offered.kind == "exact" and offered.exact.kind == "exact-cpu"
    q = unit(np.random.default_rng(3), 25)
    valid = np.ones(25, bool)
    valid[4] = False
    np.testing.assert_array_equal(
        offered.search(q, valid, 20), ExactRetriever(store, D).search(q, valid, 20)
    )
    # below the ANN size, reindex refreshes the graph's copy of the matrix (off the loop)
    uploads = offered.exact.uploads
    store.delete("i1")
    assert offered.reindex() is False and offered.exact.uploads == uploads + 1
    assert 1 not in offered.search(q, valid, 20)


def test_the_cpu_store_retriever_still_switches_to_ann_at_its_size():
    store = make_store(600)
    offered = _cpu_version().retriever_for(store)
    assert isinstance(offered, StoreRetriever)
    offered.ann_min_items = 500
    assert offered.reindex() is True and offered.kind == "ann"
    assert offered.index is not None and offered.index.threads == 1


def test_the_bundles_ann_threads_reach_the_ann_index():
    """serving.ann_threads -> Bundle -> the retriever (offered by the version or the core's)
    -> the faiss index it builds and searches with."""
    store = make_store(600)
    for model in (_cpu_version(), FakeModel(False)):
        retriever = Bundle(model, store, ann_threads=2).retriever  # type: ignore[type-var]
        assert isinstance(retriever, StoreRetriever) and retriever.threads == 2
        retriever.ann_min_items = 500
        assert retriever.reindex() is True
        assert retriever.index is not None and retriever.index.threads == 2
