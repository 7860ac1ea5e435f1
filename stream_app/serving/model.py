"""One registry version loaded for serving with onnxruntime (no torch): tokenizer + encoder,
item tower and the engine's own graphs, every file checked against the manifest's sha256.
Both engines implement the core's ``Scorer`` protocol (``stream_app.core.scorer``):

- ``ServingModel`` (engine ranker-v1): ranker + retrieval projection of rule-built slots;
- ``TowerServing`` (engine tower-v2): the learned multi-interest user tower + light heads.

``open_version`` picks the class from the manifest's ``engine.kind``. On CUDA the scoring
graphs run with IOBinding (inputs copied once to the device, outputs read back once), and
``retriever_for`` offers the engine retrieval with the item matrix resident on the GPU
(``stream_app.serving.device_retrieval``); on CPU it offers the core's ``StoreRetriever`` with
the same ONNX Runtime graph as its exact stage (faster than numpy's) and faiss ANN above it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import onnxruntime as ort

from schemas.manifest import Manifest, RankerConfigRecord
from schemas.onnx_spec import (
    ENCODER,
    HEADS,
    ITEM_TOWER,
    RANKER,
    USER_TOWER,
    GraphSpec,
    feat_slices,
    tower_feat_slices,
)
from stream_app.core.ann import StoreRetriever
from stream_app.core.catalogue import ItemStore
from stream_app.core.covisit import CoVisit
from stream_app.core.scorer import RankerOut, TowerOut
from stream_app.registry import Registry, RegistryError
from stream_app.serving.device_retrieval import DeviceRetriever
from stream_app.serving.encoding import encode_texts, load_tokenizer
from stream_app.serving.sessions import ModelLoadError, open_session

log = logging.getLogger("streamrec.serving")


class ServingVersion:
    """What every engine's version has: verified files, manifest, encoder(s), tokenizer, item
    tower, item index and co-visitation table."""

    engine_kind = ""

    def __init__(
        self,
        registry: Registry,
        version: str,
        device: str = "auto",
        threads: int = 0,
        allow_status: tuple[str, ...] = ("published",),
        reuse: ServingVersion | None = None,
    ) -> None:
        problems = registry.verify(version)
        if problems:
            msg = f"refusing model {version}: " + "; ".join(problems)
            raise ModelLoadError(msg)
        self.version = version
        self.dir = registry.path(version)
        self.device, self.threads = device, threads
        try:
            self.manifest: Manifest = registry.manifest(version)
        except RegistryError as exc:
            raise ModelLoadError(str(exc)) from None
        if self.manifest.status not in allow_status:
            msg = f"refusing model {version}: status {self.manifest.status!r}"
            raise ModelLoadError(msg)
        if self.manifest.engine.kind != self.engine_kind:
            msg = (
                f"refusing model {version}: engine {self.manifest.engine.kind!r}, "
                f"expected {self.engine_kind!r}"
            )
            raise ModelLoadError(msg)
        config = self.manifest.engine.config
        self.space = self.manifest.space
        self.k = config.k
        self.recent_len = config.recent_len
        self.d = config.d
        self.text_dim = config.text_dim
        self.feat_dim = config.feat_dim
        content = self.manifest.encoder.content_encoder
        shared = self._shared_encoders(reuse, content)
        if shared is not None:  # the same encoder files as the version served: its sessions
            self.encoder, self.content_encoder = shared
        else:
            self.encoder = self._session(ENCODER)
            self.content_encoder = (
                self.encoder
                if content == ENCODER.file
                else open_session(self.dir / content, ENCODER, device, threads)
            )
        self.item_tower = self._session(ITEM_TOWER)
        self.tokenizer = load_tokenizer(self.dir / "tokenizer")
        ids = json.loads((self.dir / "item_index.json").read_text())
        self.id_index = {item: i + 1 for i, item in enumerate(ids)}
        cv = self.dir / "covisit.npz"
        self.covisit = CoVisit.load(cv) if cv.exists() else None
        self.on_cuda = self.item_tower.get_providers()[0] == "CUDAExecutionProvider"

    def _shared_encoders(
        self, other: ServingVersion | None, content: str
    ) -> tuple[ort.InferenceSession, ort.InferenceSession] | None:
        """``other``'s encoder sessions when this version's encoder files are byte for byte
        ``other``'s (the manifests' sha256, both verified against the files) on the same device
        and threads: a fine-tuned version with a frozen encoder is served without building the
        LM's session again (most of a model swap's CPU on a small catalogue). ORT sessions are
        safe to run from several threads; the old version keeps its references."""
        if other is None or (other.device, other.threads) != (self.device, self.threads):
            return None
        mine, theirs = self.manifest, other.manifest
        if theirs.encoder.content_encoder != content:
            return None
        for name in {ENCODER.file, content}:
            a, b = mine.files.get(name), theirs.files.get(name)
            if a is None or b is None or a.sha256 != b.sha256:
                return None
        return other.encoder, other.content_encoder

    def _session(self, spec: GraphSpec) -> ort.InferenceSession:
        return open_session(self.dir / spec.file, spec, self.device, self.threads)

    def retriever_for(
        self, store: ItemStore, ann_threads: int = 1
    ) -> DeviceRetriever | StoreRetriever | None:
        """On CUDA: exact retrieval with ``store``'s item matrix resident on the GPU (the
        engine uses it in place of the numpy/faiss ``StoreRetriever``). On CPU: the core's
        ``StoreRetriever`` (exact, faiss ANN from ``ANN_MIN_ITEMS`` live items) whose exact
        stage is the same ONNX Runtime Gemm + TopK graph on the CPU provider, 2.8-4.4x faster than
        numpy's matmul + argpartition (``bench/retrieval_bench.py``). None when that graph
        cannot start (logged; the engine keeps the numpy path)."""
        device = "cuda" if self.on_cuda else "cpu"
        try:
            exact = DeviceRetriever(store, self.d, device, threads=self.threads)
        except ModelLoadError as exc:
            log.warning("%s retrieval graph unavailable, numpy retrieval: %s", device, exc)
            return None
        if self.on_cuda:
            return exact
        return StoreRetriever(store, self.d, threads=ann_threads, exact=exact)

    @property
    def providers(self) -> list[str]:
        return list(self.item_tower.get_providers())

    def encode(self, texts: list[str], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(pretrained text vectors, item-tower input vectors) for item texts."""
        text = encode_texts(self.encoder, self.tokenizer, texts, self.text_dim, batch)
        if self.content_encoder is self.encoder:
            return text, text
        return text, encode_texts(self.content_encoder, self.tokenizer, texts, self.text_dim, batch)

    def item_features(
        self, content_vecs: np.ndarray, item_ids: list[str], item_num: np.ndarray
    ) -> np.ndarray:
        """Item-tower features [N, F]; ids unknown to this version use text alone."""
        idx = np.fromiter((self.id_index.get(i, 0) for i in item_ids), np.int64, len(item_ids))
        return self.item_tower.run(
            None,
            {
                "text_vec": content_vecs.astype(np.float32),
                "id_index": idx,
                "item_num": item_num.astype(np.float32),
            },
        )[0]

    def _run(self, sess: ort.InferenceSession, feeds: dict[str, Any]) -> list:
        """One graph run; on CUDA through IOBinding (one copy in, one copy out)."""
        if not self.on_cuda:
            return sess.run(None, feeds)
        binding = sess.io_binding()
        for name, arr in feeds.items():
            binding.bind_ortvalue_input(
                name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", 0)
            )
        for out in sess.get_outputs():  # the graph's own (optional tensors may be absent)
            binding.bind_output(out.name, "cuda", 0)
        sess.run_with_iobinding(binding)
        return [o.numpy() for o in binding.get_outputs()]

    def tower(
        self,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        recent_kind: np.ndarray,
        recent_age: np.ndarray,
    ) -> TowerOut | None:
        """The learned user tower's interests (None: this engine has none)."""
        return None

    # the engine's own scoring (each engine's class implements these three)
    def queries(
        self, slots: np.ndarray, strengths: np.ndarray, newest: np.ndarray, newest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def slot_match(self, slots: np.ndarray, cand_feats: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def score(
        self,
        slots: np.ndarray,
        strengths: np.ndarray,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        cand: np.ndarray,
        cooc: np.ndarray | None = None,
        buy_prior: np.ndarray | None = None,
    ) -> RankerOut:
        raise NotImplementedError


class ServingModel(ServingVersion):
    """Engine ranker-v1: interest slots built by a rule, a target-attention ranker."""

    engine_kind = "ranker-v1"

    def __init__(
        self,
        registry: Registry,
        version: str,
        device: str = "auto",
        threads: int = 0,
        allow_status: tuple[str, ...] = ("published",),
        reuse: ServingVersion | None = None,
    ) -> None:
        super().__init__(registry, version, device, threads, allow_status, reuse)
        config = self.manifest.engine.config
        if not isinstance(config, RankerConfigRecord):  # engine_kind was checked: unreachable
            msg = f"refusing model {version}: not a ranker-v1 config"
            raise ModelLoadError(msg)
        self.config = config
        self.ranker = self._session(RANKER)
        with np.load(self.dir / "retrieval.npz") as z:
            self.slot_w = z["slot_w"].astype(np.float32)
            self.slot_b = z["slot_b"].astype(np.float32)
            self.content_w = z["content_w"].astype(np.float32) if "content_w" in z else None
        self.slices = feat_slices(self.d, config.hidden)

    def queries(
        self, slots: np.ndarray, strengths: np.ndarray, newest: np.ndarray, newest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval queries [B, K+1, d] (projected slots, newest item) and validity [B, K+1]."""
        q_slots = slots @ self.slot_w + self.slot_b
        queries = np.concatenate([q_slots, newest[:, None, : self.d]], axis=1)
        valid = np.concatenate([strengths > 0, newest_valid[:, None]], axis=1)
        return queries.astype(np.float32), valid

    def slot_match(self, slots: np.ndarray, cand_feats: np.ndarray) -> np.ndarray | None:
        """[B, N, K] cosine of each candidate's content vector with each interest slot, in the
        ranker's own content space (the term it scores interests with); None for old versions."""
        if self.content_w is None:
            return None
        proj = slots @ self.content_w
        proj /= np.maximum(np.linalg.norm(proj, axis=-1, keepdims=True), 1e-9)
        return np.matmul(cand_feats[..., self.slices["t"]], proj.transpose(0, 2, 1))

    def score(
        self,
        slots: np.ndarray,
        strengths: np.ndarray,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        cand: np.ndarray,
        cooc: np.ndarray | None = None,
        buy_prior: np.ndarray | None = None,  # tower-v2's input: ranker-v1 has none
    ) -> RankerOut:
        if cooc is None:
            cooc = np.zeros(cand.shape[:2], np.float32)
        feeds = {
            "slots": slots,
            "strengths": strengths,
            "recent": recent,
            "recent_mask": recent_mask,
            "cand": cand,
            "cooc": cooc,
        }
        p_click, p_buy, attn = self._run(self.ranker, feeds)
        return RankerOut(p_click, p_buy, attn)


class TowerServing(ServingVersion):
    """Engine tower-v2: the learned multi-interest user tower reads the recent items and gives
    K interest vectors with weights (retrieval queries by dot product over the item vectors);
    the light heads score the retrieved candidates (p_click, p_purchase) from them."""

    engine_kind = "tower-v2"

    def __init__(
        self,
        registry: Registry,
        version: str,
        device: str = "auto",
        threads: int = 0,
        allow_status: tuple[str, ...] = ("published",),
        reuse: ServingVersion | None = None,
    ) -> None:
        super().__init__(registry, version, device, threads, allow_status, reuse)
        self.user_tower = self._session(USER_TOWER)
        self.heads = self._session(HEADS)
        # versions exported before the purchase head read the user's purchase share lack it
        self.has_buy_prior = "buy_prior" in {i.name for i in self.heads.get_inputs()}
        self.slices = tower_feat_slices(self.d)

    def tower(
        self,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        recent_kind: np.ndarray,
        recent_age: np.ndarray,
    ) -> TowerOut:
        feeds = {
            "recent": recent.astype(np.float32, copy=False),
            "recent_mask": recent_mask.astype(np.float32, copy=False),
            "recent_kind": recent_kind.astype(np.int64, copy=False),
            "recent_age": recent_age.astype(np.float32, copy=False),
        }
        interests, weights, attn, *prior = self._run(self.user_tower, feeds)
        return TowerOut(interests, weights, attn, prior[0] if prior else None)

    def queries(
        self, slots: np.ndarray, strengths: np.ndarray, newest: np.ndarray, newest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval queries [B, K+1, d]: the K interests, then the newest item's own vector."""
        queries = np.concatenate([slots, newest[:, None, : self.d]], axis=1)
        valid = np.concatenate([strengths > 0, newest_valid[:, None]], axis=1)
        return queries.astype(np.float32), valid

    def slot_match(self, slots: np.ndarray, cand_feats: np.ndarray) -> np.ndarray | None:
        """[B, N, K] dot product of each candidate's item vector with each interest (both
        unit vectors: a cosine), the term the tower retrieves by."""
        return np.matmul(cand_feats[..., : self.d], slots.transpose(0, 2, 1))

    def score(
        self,
        slots: np.ndarray,
        strengths: np.ndarray,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        cand: np.ndarray,
        cooc: np.ndarray | None = None,
        buy_prior: np.ndarray | None = None,
    ) -> RankerOut:
        """Heads over the candidates; ``attn`` [B, N, K + L]: the candidate's softmax match
        over the K interests, then that mixture of the interests' attention over the L recent
        items (``because``). ``slots``/``strengths`` are the tower's interests / weights."""
        b = slots.shape[0]
        cand = np.broadcast_to(cand, (b, *cand.shape[1:]))
        if cooc is None:
            cooc = np.zeros(cand.shape[:2], np.float32)
        feeds = {
            "interests": slots.astype(np.float32, copy=False),
            "weights": strengths.astype(np.float32, copy=False),
            "cand": np.ascontiguousarray(cand, np.float32),
            "cooc": cooc.astype(np.float32, copy=False),
        }
        if self.has_buy_prior:
            feeds["buy_prior"] = (
                np.zeros(b, np.float32) if buy_prior is None else buy_prior.astype(np.float32)
            )
        p_click, p_buy, match = self._run(self.heads, feeds)
        return RankerOut(p_click, p_buy, interest_attention(match, strengths, recent_mask))


def interest_attention(
    match: np.ndarray, weights: np.ndarray, recent_mask: np.ndarray
) -> np.ndarray:
    """[B, N, K + L] from the heads' match [B, N, K]: softmax over the active interests
    (weights > 0), then zeros for the L recent items (the engine reads ``because`` from the
    tower's own attention, kept with the batch)."""
    m = np.where((weights > 0)[:, None, :], match * 10.0, -np.inf)
    top = m.max(2, keepdims=True)
    e = np.exp(m - np.where(np.isfinite(top), top, 0.0))
    e = e / np.maximum(e.sum(2, keepdims=True), 1e-12)
    rec = np.zeros((*match.shape[:2], recent_mask.shape[1]), np.float32)
    return np.concatenate([e.astype(np.float32), rec], axis=2)


def open_version(
    registry: Registry,
    version: str,
    device: str = "auto",
    threads: int = 0,
    allow_status: tuple[str, ...] = ("published",),
    reuse: ServingVersion | None = None,
) -> ServingVersion:
    """The serving class of ``version``'s engine (``manifest.engine.kind``); ``reuse``: a
    loaded version whose encoder sessions it may share (``ServingVersion._shared_encoders``)."""
    try:
        tower = registry.manifest(version).engine.kind == TowerServing.engine_kind
    except RegistryError:
        tower = False  # ServingModel's constructor reports what is wrong
    cls: type[ServingVersion] = TowerServing if tower else ServingModel
    return cls(registry, version, device, threads, allow_status, reuse)
