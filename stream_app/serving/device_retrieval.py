"""Exact retrieval with the item matrix resident on an ONNX Runtime device: on CUDA the
engine's whole retrieval; on the CPU provider the exact stage of the core's ``StoreRetriever``
below its ANN size (ORT's Gemm + TopK beat numpy's matmul + argpartition 2.8-4.4x on one thread;
2.1x, 12 vs 26 ms, for a 64-event batch's 320 queries of top 44 on 2026-12-04).

``DeviceRetriever`` implements the core's retriever interface (``search``, ``reindex``,
``kind``) over an ``ItemStore`` with the committed graph ``graphs/retrieve.onnx``
(``scripts/make_retrieval_graph.py``): one Gemm of the queries with the item matrix plus the
alive bias, then TopK, all on the device.

What lives on the device: the retrieval vectors ``store.feats[:size, :d]`` [N, d] float32 and
the alive bias [N] (0 live, ``DEAD_BIAS`` dead), as OrtValues. They are uploaded again whenever
``store.version`` changed since the last upload (any upsert or delete; popularity bumps do not
change it). The cost of an upload is a host copy of the N x d slice (it is not contiguous in the
store) plus one host-to-device copy: 1M items x 64-d is 256 MB, ~0.1-0.2 s of host copying on a
small CPU and ~10-30 ms of PCIe transfer; while the row count is unchanged the device buffers
are reused (``update_inplace``), otherwise reallocated. ``reindex`` (which the worker calls off
the event loop after every catalogue change) does the upload, so a search normally finds the
matrix current; a search that finds it stale uploads first.

Per search: one host-to-device copy of the valid queries [Q', d], one graph run, one
device-to-host copy of the two outputs [Q', n] (scores, rows). Rows whose score is the dead
bias (a query with fewer than n live rows) come back as -1, as do invalid queries.

On CUDA the session runs with ``use_tf32=0``: scores are fp32 dot products, so the ranking
matches the numpy exact retriever's (TF32 matmuls differ by up to ~5e-4, gpu/README.md).
"""

from __future__ import annotations

import threading
import time
from importlib.resources import files
from typing import Any

import numpy as np
import onnxruntime as ort

from stream_app.core.catalogue import ItemStore
from stream_app.serving.sessions import ModelLoadError, choose_providers

DEAD_BIAS = -1e30  # alive_bias of a dead row: never above a live row's dot product
_DEAD_BELOW = DEAD_BIAS / 2
GRAPH_FILE = "retrieve.onnx"


def graph_bytes() -> bytes:
    """The committed retrieval graph, from the installed package."""
    return (files("stream_app.serving") / "graphs" / GRAPH_FILE).read_bytes()


def _providers(device: str, device_id: int) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        msg = f"device: expected 'cpu' or 'cuda', got {device!r}"
        raise ValueError(msg)
    if choose_providers("cuda")[0] != "CUDAExecutionProvider":  # raises without the provider
        msg = "device=cuda: the CUDA provider is not available"
        raise ModelLoadError(msg)
    cuda = {"device_id": str(device_id), "use_tf32": "0"}
    return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


class DeviceRetriever:
    """Exact top-n by dot product over the store's live rows, the item matrix on ``device``
    (module docstring: what is resident, when it is uploaded, what a search copies)."""

    def __init__(
        self, store: ItemStore, d: int, device: str = "cpu", device_id: int = 0, threads: int = 0
    ) -> None:
        self.store, self.d = store, d
        self.device, self.device_id = device, device_id
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                graph_bytes(), sess_options=opts, providers=_providers(device, device_id)
            )
        except ModelLoadError:
            raise
        except Exception as exc:  # any ORT load failure: no device retriever
            msg = f"{GRAPH_FILE}: onnxruntime could not load it on {device}: {exc}"
            raise ModelLoadError(msg) from exc
        want = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        if self.session.get_providers()[0] != want:
            got = self.session.get_providers()
            msg = f"{GRAPH_FILE}: {device} requested, the session runs on {got}"
            raise ModelLoadError(msg)
        self._ort_device = "cuda" if device == "cuda" else "cpu"
        self._lock = threading.Lock()
        self._synced = -1  # store.version of the resident matrix
        self._size = 0
        self._items: ort.OrtValue | None = None
        self._bias: ort.OrtValue | None = None
        self._host: tuple[np.ndarray, np.ndarray] | None = None  # CPU OrtValues alias these
        self.uploads = 0
        self.last_upload_s = 0.0

    @property
    def kind(self) -> str:
        return f"exact-{self.device}"

    def reindex(self) -> bool:
        """Upload the item matrix if the store changed (off the event loop); the retriever's
        kind never changes, so always False."""
        self.sync()
        return False

    def sync(self) -> bool:
        """Make the resident matrix and bias current with the store; True when it uploaded."""
        with self._lock:
            store = self.store
            if store.version == self._synced:
                return False
            t0 = time.perf_counter()
            version, size = store.version, store.size
            items = np.ascontiguousarray(store.feats[:size, : self.d], np.float32)
            bias = np.where(store.alive[:size], 0.0, DEAD_BIAS).astype(np.float32)
            if (
                self._ort_device == "cuda"
                and self._items is not None
                and self._bias is not None
                and size == self._size
            ):
                self._items.update_inplace(items)  # same shape: reuse the device buffers
                self._bias.update_inplace(bias)
            else:
                self._items = ort.OrtValue.ortvalue_from_numpy(
                    items, self._ort_device, self.device_id
                )
                self._bias = ort.OrtValue.ortvalue_from_numpy(
                    bias, self._ort_device, self.device_id
                )
            self._host = (items, bias) if self._ort_device == "cpu" else None
            self._synced, self._size = version, size
            self.uploads += 1
            self.last_upload_s = time.perf_counter() - t0
            return True

    def topn(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, m], rows [Q, m]) of the best m = min(n, rows in the store) rows per
        query, best first; dead rows (only when fewer than m are live) have row -1."""
        self.sync()
        with self._lock:
            items, bias, size = self._items, self._bias, self._size
        q = np.ascontiguousarray(queries, np.float32)
        if q.ndim != 2 or q.shape[1] != self.d:
            msg = f"queries: expected [Q, {self.d}], got {list(q.shape)}"
            raise ValueError(msg)
        m = min(n, size)
        if items is None or bias is None or m <= 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        binding = self.session.io_binding()
        binding.bind_cpu_input("queries", q)  # the one host-to-device copy of the search
        binding.bind_ortvalue_input("items", items)
        binding.bind_ortvalue_input("alive_bias", bias)
        binding.bind_cpu_input("k", np.array([m], np.int64))  # TopK reads k on the host
        binding.bind_output("top_scores", self._ort_device, self.device_id)
        binding.bind_output("rows", self._ort_device, self.device_id)
        self.session.run_with_iobinding(binding)
        scores, rows = binding.copy_outputs_to_cpu()  # the one device-to-host copy
        rows = np.where(scores > _DEAD_BELOW, rows, -1).astype(np.int64, copy=False)
        return scores, rows

    def search(self, queries: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
        """queries [Q, d], valid [Q] bool -> rows [Q, n] (-1 where nothing / invalid)."""
        out = np.full((queries.shape[0], n), -1, np.int64)
        rows = np.flatnonzero(valid)
        if rows.size == 0 or n <= 0:
            return out
        _, top = self.topn(queries[rows], n)
        out[rows, : top.shape[1]] = top
        return out
