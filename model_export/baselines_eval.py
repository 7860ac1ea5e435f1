"""Baselines scored on exactly the training pipeline's test examples (same split, full
ranking, same masking): popularity, item co-occurrence (item-kNN over the recent history),
and the pretrained encoder zero-shot (interest slots vs item text by cosine, no training).

Ties among zero scores are broken by popularity (x 1e-6) for co-occurrence and zero-shot,
so an item-kNN with no neighbours falls back to MostPop instead of item-index order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model_export.data import Examples, ItemSpace, SplitData, popularity, train_sequences
from model_export.train import ranking_report
from stream_app.core.baselines import CoOccurrence


def zero_shot_scores(space: ItemSpace, ex: Examples, chunk: int = 256) -> np.ndarray:
    out = np.full((len(ex), space.n + 1), -np.inf, np.float32)
    text = space.text_vecs.T
    for s in range(0, len(ex), chunk):
        sl = slice(s, s + chunk)
        sims = np.einsum("bkd,dn->bkn", ex.slots[sl].astype(np.float32), text)
        sims[ex.strengths[sl] <= 0] = -np.inf
        best = sims.max(1)
        best[~np.isfinite(best)] = 0.0
        out[sl] = best
    return out


def evaluate_baselines(space: ItemSpace, data: SplitData) -> dict[str, dict[str, Any]]:
    ex = data.test
    if len(ex) == 0:
        return {}
    pop = popularity(data.train, space.n)
    pop_norm = pop / max(pop.max(), 1.0)
    pop_scores = np.broadcast_to(pop, (len(ex), space.n + 1)).astype(np.float32)
    cooc = CoOccurrence(space.n + 1, window=5).fit(train_sequences(data.train))
    cooc_scores = np.zeros((len(ex), space.n + 1), np.float32)
    for i in range(len(ex)):
        hist = ex.recent[i][ex.recent[i] > 0][::-1]  # oldest .. newest
        cooc_scores[i] = cooc.scores(hist) + 1e-6 * pop_norm
    zs = zero_shot_scores(space, ex) + 1e-6 * pop_norm.astype(np.float32)
    return {
        "pop": ranking_report(pop_scores, ex, purchase_scores=pop_scores),
        "cooc": ranking_report(cooc_scores, ex, purchase_scores=cooc_scores),
        "zero-shot-lm": ranking_report(zs, ex, purchase_scores=zs),
    }
