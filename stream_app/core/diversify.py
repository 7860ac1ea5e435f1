"""Diversified top-K: interest-proportional quotas over the user's slots, plus MMR.

Each candidate carries the interest slot it serves (-1 = exploration). Slot quotas are the
largest-remainder split of K by slot strength (every active slot gets a seat when K allows).
Within the quotas, MMR picks greedily: lambda * relevance - (1 - lambda) * max cosine to the
items already picked. With lambda = 1 and no quotas this is plain top-K by score.
"""

from __future__ import annotations

import numpy as np


def slot_quotas(strengths: np.ndarray, k: int) -> np.ndarray:
    """Seats per slot for a list of length k, proportional to strength (largest remainder)."""
    active = strengths > 0
    quotas = np.zeros(strengths.shape[0], np.int64)
    n_active = int(active.sum())
    if n_active == 0 or k <= 0:
        return quotas
    share = np.where(active, strengths, 0.0) / strengths[active].sum()
    rest = k
    if k >= n_active:
        quotas[active] = 1
        rest = k - n_active
    raw = share * rest
    quotas += np.floor(raw).astype(np.int64)
    left = k - int(quotas.sum())
    act = np.flatnonzero(active)
    frac = raw[act] - np.floor(raw[act])
    for j in act[np.argsort(-frac, kind="stable")][:left]:
        quotas[j] += 1
    quotas[int(np.argmax(share))] += k - int(quotas.sum())
    return quotas


def mmr_select(scores: np.ndarray, vecs: np.ndarray, slots: np.ndarray, quotas: np.ndarray | None,
               k: int, lam: float, explore_max: int = 2) -> list[int]:  # fmt: skip
    """Indices (into the candidate arrays) of the diversified top-k, in rank order.

    scores [C] relevance; vecs [C, D] unit vectors; slots [C] slot of each candidate (-1:
    exploration, at most ``explore_max`` picked); quotas [K] seats per slot or None.
    """
    c = scores.shape[0]
    if c == 0 or k <= 0:
        return []
    lo, hi = float(scores.min()), float(scores.max())
    rel = (scores - lo) / (hi - lo) if hi > lo else np.ones(c)
    max_sim = np.zeros(c)
    taken = np.zeros(c, bool)
    used = np.zeros(0 if quotas is None else quotas.shape[0], np.int64)
    explored = 0
    picked: list[int] = []
    relax = quotas is None
    while len(picked) < min(k, c):
        allowed = ~taken & ~((slots < 0) & (explored >= explore_max))
        if not relax:
            full = np.flatnonzero(used >= quotas)
            allowed &= ~np.isin(slots, full)
        if not allowed.any():
            if relax:
                allowed = ~taken
            else:
                relax = True
                continue
        value = rel if lam >= 1.0 else lam * rel - (1.0 - lam) * np.maximum(max_sim, 0.0)
        i = int(np.argmax(np.where(allowed, value, -np.inf)))
        picked.append(i)
        taken[i] = True
        s = int(slots[i])
        if s < 0:
            explored += 1
        elif s < used.shape[0]:
            used[s] += 1
        if lam < 1.0:
            max_sim = np.maximum(max_sim, vecs @ vecs[i])
    return picked
