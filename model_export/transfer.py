"""Transfer step for the encoder (modes ``top-N`` and ``full``): in-batch contrastive
next-item fine-tuning on item text. For consecutive training interactions (a -> b) the
encoder learns to place b's text nearest a's among the batch (InfoNCE, symmetric), which
adapts the pretrained LM to the catalogue's notion of "goes together". The ranker is then
trained on the tuned vectors (the encoder's role in L = L_ranker + λ·L_aux, run as a stage).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from model_export.encoder import TextEncoder, set_trainable, tokenize
from schemas.reports import TransferStats


def next_item_pairs(prev: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[P, 2] (previous item, next item) index pairs with a real, different previous item."""
    keep = (prev > 0) & (prev != target)
    return np.stack([prev[keep], target[keep]], axis=1)


def tune_encoder(
    encoder: TextEncoder,
    tokenizer: object,
    texts: Sequence[str],
    pairs: np.ndarray,
    mode: str,
    steps: int = 100,
    batch_size: int = 32,
    lr: float = 3e-5,
    weight_decay: float = 0.01,
    temperature: float = 0.05,
    max_length: int = 48,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> TransferStats:
    """Fine-tune ``encoder`` in place; parameters outside ``mode`` never change."""
    n_train = set_trainable(encoder, mode)
    start = time.perf_counter()
    if n_train == 0 or steps <= 0 or len(pairs) == 0:
        encoder.eval()
        return TransferStats(
            mode=mode,
            steps=0,
            trainable_params=n_train,
            loss_first=float("nan"),
            loss_last=float("nan"),
            seconds=0.0,
        )
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    encoder.train()
    first = last = float("nan")
    for step in range(steps):
        rows = pairs[rng.choice(len(pairs), size=min(batch_size, len(pairs)), replace=False)]
        # drop duplicate targets: they would be false negatives for each other
        _, keep = np.unique(rows[:, 1], return_index=True)
        rows = rows[np.sort(keep)]
        a = tokenize(tokenizer, [texts[i] for i in rows[:, 0]], max_length)
        b = tokenize(tokenizer, [texts[i] for i in rows[:, 1]], max_length)
        za = encoder(a["input_ids"], a["attention_mask"])
        zb = encoder(b["input_ids"], b["attention_mask"])
        logits = za @ zb.T / temperature
        labels = torch.arange(len(rows))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        if step == 0:
            first = last
        if on_step is not None:
            on_step(step + 1, last)
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad = False
    return TransferStats(
        mode=mode,
        steps=steps,
        trainable_params=n_train,
        loss_first=first,
        loss_last=last,
        seconds=time.perf_counter() - start,
    )
