"""A numpy stand-in for ``ServingModel`` (no ONNX, no torch) for the worker's unit tests, with
the same attributes and methods the engine and the worker use. No tests here."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.core.serving import RankerOut

TEXT_DIM, D, K, RECENT = 16, 4, 3, 5


def text_vector(text: str, dim: int = TEXT_DIM) -> np.ndarray:
    """Deterministic unit vector per text; texts sharing their first word are close."""
    head = text.split()[0] if text.split() else ""
    base = np.random.default_rng(int(hashlib.sha256(head.encode()).hexdigest()[:8], 16))
    noise = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
    v = base.standard_normal(dim) + 0.2 * noise.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeModel:
    def __init__(
        self,
        version: str = "v0001",
        space: str = "space-a",
        nan: bool = False,
        content_sha: str | None = None,
    ) -> None:
        self.version, self.space, self.nan = version, space, nan
        self.k, self.d, self.text_dim, self.recent_len = K, D, TEXT_DIM, RECENT
        self.feat_dim = D + 2
        self.dir = Path("/nonexistent") / version
        content = "content_encoder.onnx" if content_sha else "encoder.onnx"
        self.manifest: dict[str, Any] = {
            "space": space,
            "encoder": {"content_encoder": content},
            "files": {content: {"sha256": content_sha or "e" * 64}},
        }
        rng = np.random.default_rng(7)
        self.proj = rng.standard_normal((TEXT_DIM, D)).astype(np.float32)
        self.slot_w, self.slot_b = self.proj.copy(), np.zeros(D, np.float32)
        self.encoded: list[str] = []
        self.providers = ["CPUExecutionProvider"]

    def encode(self, texts: list[str], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        self.encoded += texts
        vecs = np.stack([text_vector(t) for t in texts]) if texts else np.zeros((0, TEXT_DIM))
        return vecs.astype(np.float32), vecs.astype(np.float32)

    def item_features(
        self, content: np.ndarray, item_ids: list[str], num: np.ndarray
    ) -> np.ndarray:
        return np.concatenate([content @ self.proj, num], axis=1).astype(np.float32)

    def queries(
        self, slots: np.ndarray, strengths: np.ndarray, newest: np.ndarray, newest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        q = slots @ self.slot_w + self.slot_b
        queries = np.concatenate([q, newest[:, None, : self.d]], axis=1)
        valid = np.concatenate([strengths > 0, newest_valid[:, None]], axis=1)
        return queries.astype(np.float32), valid

    def score(
        self,
        slots: np.ndarray,
        strengths: np.ndarray,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        cand: np.ndarray,
    ) -> RankerOut:
        b, n = cand.shape[:2]
        q = (slots @ self.slot_w).max(axis=1)  # [B, D]
        logit = np.einsum("bnd,bd->bn", cand[..., : self.d], q)
        p = 1.0 / (1.0 + np.exp(-logit))
        if self.nan:
            p = p * np.nan
        attn = np.zeros((b, n, self.k + self.recent_len), np.float32)
        attn[..., 0] = 1.0
        return RankerOut(p.astype(np.float32), (p * 0.5).astype(np.float32), attn)


def catalogue_items(n_groups: int = 4, per_group: int = 10) -> list[dict[str, Any]]:
    words = ["coffee", "tripod", "skates", "yarn", "kayak", "lens"][:n_groups]
    return [
        {
            "item_id": f"i{g}{j:02d}",
            "title": f"{w} model {j}",
            "categories": [w],
            "price": 10.0 + j,
            "ts": "2026-01-01T00:00:00Z",
        }
        for g, w in enumerate(words)
        for j in range(per_group)
    ]
