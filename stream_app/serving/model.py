"""One registry version loaded for serving with onnxruntime (no torch): tokenizer + encoder,
item tower, ranker, retrieval projection; every file checked against the manifest's sha256.
``ServingModel`` implements the core's ``Scorer`` protocol (``stream_app.core.scorer``).

On CUDA the ranker runs with IOBinding (inputs copied once to the device, outputs read back
once).
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from schemas.manifest import Manifest
from schemas.onnx_spec import ENCODER, ITEM_TOWER, RANKER, feat_slices
from stream_app.core.covisit import CoVisit
from stream_app.core.scorer import RankerOut
from stream_app.registry import Registry, RegistryError
from stream_app.serving.encoding import encode_texts, load_tokenizer
from stream_app.serving.sessions import ModelLoadError, open_session


class ServingModel:
    def __init__(
        self,
        registry: Registry,
        version: str,
        device: str = "auto",
        threads: int = 0,
        allow_status: tuple[str, ...] = ("published",),
    ) -> None:
        problems = registry.verify(version)
        if problems:
            msg = f"refusing model {version}: " + "; ".join(problems)
            raise ModelLoadError(msg)
        self.version = version
        self.dir = registry.path(version)
        try:
            self.manifest: Manifest = registry.manifest(version)
        except RegistryError as exc:
            raise ModelLoadError(str(exc)) from None
        if self.manifest.status not in allow_status:
            msg = f"refusing model {version}: status {self.manifest.status!r}"
            raise ModelLoadError(msg)
        self.config = self.manifest.engine.config
        self.space = self.manifest.space
        self.k = self.config.k
        self.recent_len = self.config.recent_len
        self.d = self.config.d
        self.text_dim = self.config.text_dim
        self.feat_dim = self.config.feat_dim
        self.encoder = open_session(self.dir / ENCODER.file, ENCODER, device, threads)
        content = self.manifest.encoder.content_encoder
        self.content_encoder = (
            self.encoder
            if content == ENCODER.file
            else open_session(self.dir / content, ENCODER, device, threads)
        )
        self.item_tower = open_session(self.dir / ITEM_TOWER.file, ITEM_TOWER, device, threads)
        self.ranker = open_session(self.dir / RANKER.file, RANKER, device, threads)
        self.on_cuda = self.ranker.get_providers()[0] == "CUDAExecutionProvider"
        self.tokenizer = load_tokenizer(self.dir / "tokenizer")
        ids = json.loads((self.dir / "item_index.json").read_text())
        self.id_index = {item: i + 1 for i, item in enumerate(ids)}
        with np.load(self.dir / "retrieval.npz") as z:
            self.slot_w = z["slot_w"].astype(np.float32)
            self.slot_b = z["slot_b"].astype(np.float32)
            self.content_w = z["content_w"].astype(np.float32) if "content_w" in z else None
        self.slices = feat_slices(self.d, self.config.hidden)
        cv = self.dir / "covisit.npz"
        self.covisit = CoVisit.load(cv) if cv.exists() else None

    @property
    def providers(self) -> list[str]:
        return list(self.ranker.get_providers())

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
        if self.on_cuda:
            binding = self.ranker.io_binding()
            for name, arr in feeds.items():
                binding.bind_ortvalue_input(
                    name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", 0)
                )
            for name in RANKER.output_names:
                binding.bind_output(name, "cuda", 0)
            self.ranker.run_with_iobinding(binding)
            p_click, p_buy, attn = (o.numpy() for o in binding.get_outputs())
        else:
            p_click, p_buy, attn = self.ranker.run(None, feeds)
        return RankerOut(p_click, p_buy, attn)
