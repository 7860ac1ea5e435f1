"""One registry version loaded for serving with onnxruntime (no torch): tokenizer + encoder,
item tower, ranker, retrieval projection; every file checked against the manifest's sha256.

Providers follow the ``device`` setting: ``auto`` = CUDA when a CUDA session really starts
(onnxruntime-gpu lists CUDA even on machines without a GPU, and silently falls back to CPU,
so we check ``session.get_providers()``), else CPU; ``cuda`` fails loudly without it. On CUDA
the ranker runs with IOBinding (inputs copied once to the device, outputs read back once).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from schemas.onnx_spec import ENCODER, ITEM_TOWER, RANKER, GraphSpec, feat_slices
from stream_app.core.covisit import CoVisit
from stream_app.registry import Registry

log = logging.getLogger("streamrec.serving")
MAX_TOKENS = 128


class ModelLoadError(RuntimeError):
    """A version that cannot serve: missing/tampered files, wrong graph contract, bad outputs."""


def _gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/dev/dxg").exists()


def choose_providers(device: str) -> list[str]:
    """Provider list for a device setting. ``auto`` only tries CUDA when a GPU device node
    exists (otherwise onnxruntime-gpu logs load errors for every session)."""
    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and not _gpu_present()):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available and hasattr(ort, "preload_dlls"):
        try:  # CUDA/cuDNN from the nvidia-* pip packages (torch's), when installed
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - system CUDA may still work
            log.debug("onnxruntime.preload_dlls failed", exc_info=True)
    if "CUDAExecutionProvider" not in available:
        if device == "cuda":
            msg = f"device=cuda: onnxruntime has no CUDAExecutionProvider (has {available})"
            raise ModelLoadError(msg)
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_session(
    path: Path, spec: GraphSpec, device: str, threads: int = 0
) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = choose_providers(device)
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - any ORT load failure refuses the version
        msg = f"{path.name}: onnxruntime could not load it: {exc}"
        raise ModelLoadError(msg) from exc
    if providers[0] == "CUDAExecutionProvider" and sess.get_providers()[0] != providers[0]:
        if device == "cuda":
            msg = f"{path.name}: CUDA requested but the session runs on {sess.get_providers()}"
            raise ModelLoadError(msg)
        log.info("CUDA unavailable at run time; %s runs on CPU", path.name)
        sess = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    _check_contract(sess, spec, path)
    return sess


def _check_contract(sess: ort.InferenceSession, spec: GraphSpec, path: Path) -> None:
    types = {"float32": "tensor(float)", "int64": "tensor(int64)"}
    got = {i.name: i.type for i in sess.get_inputs()}
    for t in spec.inputs:
        if got.get(t.name) != types[t.dtype]:
            msg = f"{path.name}: input {t.name!r} expected {types[t.dtype]}, got {got.get(t.name)}"
            raise ModelLoadError(msg)
    outs = [o.name for o in sess.get_outputs()]
    if outs != spec.output_names:
        msg = f"{path.name}: outputs expected {spec.output_names}, got {outs}"
        raise ModelLoadError(msg)


@dataclass
class RankerOut:
    p_click: np.ndarray  # [B, N]
    p_purchase: np.ndarray  # [B, N]
    attn: np.ndarray  # [B, N, K + L]


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
        self.manifest: dict[str, Any] = registry.manifest(version)
        if self.manifest.get("status") not in allow_status:
            msg = f"refusing model {version}: status {self.manifest.get('status')!r}"
            raise ModelLoadError(msg)
        self.config: dict[str, Any] = self.manifest["config"]
        self.space: str = self.manifest["space"]
        self.k = int(self.config["k"])
        self.recent_len = int(self.config["recent_len"])
        self.d = int(self.config["d"])
        self.text_dim = int(self.config["text_dim"])
        self.feat_dim = int(self.config["feat_dim"])
        self.encoder = open_session(self.dir / ENCODER.file, ENCODER, device, threads)
        content = self.manifest.get("encoder", {}).get("content_encoder", ENCODER.file)
        self.content_encoder = (
            self.encoder
            if content == ENCODER.file
            else open_session(self.dir / content, ENCODER, device, threads)
        )
        self.item_tower = open_session(self.dir / ITEM_TOWER.file, ITEM_TOWER, device, threads)
        self.ranker = open_session(self.dir / RANKER.file, RANKER, device, threads)
        self.on_cuda = self.ranker.get_providers()[0] == "CUDAExecutionProvider"
        self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer" / "tokenizer.json"))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        ids = json.loads((self.dir / "item_index.json").read_text())
        self.id_index = {item: i + 1 for i, item in enumerate(ids)}
        with np.load(self.dir / "retrieval.npz") as z:
            self.slot_w = z["slot_w"].astype(np.float32)
            self.slot_b = z["slot_b"].astype(np.float32)
            self.content_w = z["content_w"].astype(np.float32) if "content_w" in z else None
        self.slices = feat_slices(self.d, int(self.config["hidden"]))
        cv = self.dir / "covisit.npz"
        self.covisit = CoVisit.load(cv) if cv.exists() else None

    @property
    def providers(self) -> list[str]:
        return list(self.ranker.get_providers())

    def _encode(self, sess: ort.InferenceSession, texts: list[str], batch: int) -> np.ndarray:
        out = np.zeros((len(texts), self.text_dim), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for s in range(0, len(texts), batch):
            idx = order[s : s + batch]
            enc = self.tokenizer.encode_batch([texts[i] for i in idx])
            input_ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            out[idx] = sess.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out

    def encode(self, texts: list[str], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(pretrained text vectors, item-tower input vectors) for item texts."""
        text = self._encode(self.encoder, texts, batch)
        if self.content_encoder is self.encoder:
            return text, text
        return text, self._encode(self.content_encoder, texts, batch)

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
