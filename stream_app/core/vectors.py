"""A model version's training-catalogue vectors (``catalog_vectors.npz``), read with numpy alone
(workers and replay have no torch). Written by ``model_export.checkpoint.save``.

Arrays: ``item_ids`` [M], ``text`` [M, D] (pretrained encoder: the interest space),
``content`` [M, D] (the item tower's input: == text unless the version tuned its own encoder),
``num`` [M, 2] and, since versions carry it, ``text_sha`` [M]: sha256 of the item text the
vectors were computed from, so a reader can reuse a vector only for an unchanged text.
(The file name predates the "catalogue" spelling; it stays so published versions still load.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VECTORS_FILE = "catalog_vectors.npz"


def text_sha(text: str) -> str:
    """The key of an item text everywhere vectors are cached or reused."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TrainingVectors:
    item_ids: list[str]
    text: np.ndarray  # [M, D] float32
    content: np.ndarray  # [M, D] float32
    text_sha: list[str] | None  # None: a version written before text hashes were stored

    def by_id(self) -> dict[str, tuple[str | None, np.ndarray, np.ndarray]]:
        """item id -> (text sha or None, text vector, content vector)."""
        shas: list[str | None] = [None] * len(self.item_ids)
        if self.text_sha is not None:
            shas = list(self.text_sha)
        return {
            item: (sha, self.text[i], self.content[i])
            for i, (item, sha) in enumerate(zip(self.item_ids, shas, strict=True))
        }


def load_vectors(version_dir: Path) -> TrainingVectors | None:
    """The training vectors of a version directory; None when the file is absent."""
    path = Path(version_dir) / VECTORS_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        ids = [str(x) for x in z["item_ids"]]
        shas = [str(x) for x in z["text_sha"]] if "text_sha" in z.files else None
        text = z["text"].astype(np.float32)
        content = z["content"].astype(np.float32)
    if shas is not None and len(shas) != len(ids):
        msg = f"{path}: text_sha has {len(shas)} entries, expected one per item ({len(ids)})"
        raise ValueError(msg)
    return TrainingVectors(ids, text, content, shas)
