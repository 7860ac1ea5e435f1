"""Baselines: popularity, decayed popularity, co-occurrence and the LOO MostPop evaluation."""

from __future__ import annotations

import csv
import math
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from stream_app.core.baselines import (
    CoOccurrence,
    DecayedPopularity,
    loo_popularity_eval,
    loo_popularity_ranks,
    popularity_scores,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ML_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-latest-small"


def ev(user: str, item: str, sec: float, kind: str = "click") -> SimpleNamespace:
    return SimpleNamespace(
        user_id=user, item_id=item, ts=T0 + timedelta(seconds=sec), event_type=kind
    )


def test_popularity_scores_counts() -> None:
    index = {"a": 0, "b": 1, "c": 2}
    got = popularity_scores([ev("u", "b", 0), ev("v", "b", 1), ev("u", "a", 2)], index)
    assert got.tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="item_index"):
        popularity_scores([ev("u", "zz", 0)], index)


def test_decayed_popularity_half_life() -> None:
    pop = DecayedPopularity(half_life_s=100.0)
    pop.update(0, 0.0)
    pop.update(2, 100.0, weight=2.0)
    # at t=100: item 0 decayed one half-life -> 0.5; item 2 fresh -> 2; item 1 never seen
    assert pop.scores(100.0) == pytest.approx([0.5, 0.0, 2.0])
    # at t=300: 0.5**3 = 0.125 and 2 * 0.5**2 = 0.5 ; padded to 4 items
    assert pop.scores(300.0, n_items=4) == pytest.approx([0.125, 0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="half_life_s"):
        DecayedPopularity(0.0)


def test_decayed_popularity_survives_long_streams() -> None:
    pop = DecayedPopularity(half_life_s=1.0)
    for step in range(50):
        pop.update(step % 3, step * 1000.0)  # exponents far beyond float range
    s = pop.scores(49_000.0)
    assert np.isfinite(s).all()
    # only the last update (item 49 % 3 = 1) survives; older ones are 2**-1000 ~ 0
    assert s == pytest.approx([0.0, 1.0, 0.0])


def test_cooccurrence_hand_computed() -> None:
    # pairs within window 1: (0,1) twice, (0,2) once; pop = [3, 2, 1]
    # sim(0,1) = 2 / sqrt(3*2), sim(0,2) = 1 / sqrt(3*1)
    model = CoOccurrence(n_items=4, window=1).fit([[0, 1], [0, 2], [1, 0]])
    cols, sims = model.neighbours(0)
    assert cols.tolist() == [1, 2]
    assert sims == pytest.approx([2 / math.sqrt(6), 1 / math.sqrt(3)])
    assert model.neighbours(3)[0].size == 0 and model.neighbours(99)[0].size == 0
    # history [2, 0]: 0 is the latest (weight 1), 2 before it (weight 1/2)
    # -> item 0 gets 0.5 * sim(2,0); item 1 gets sim(0,1); item 2 gets sim(0,2)
    scores = model.scores([2, 0])
    assert scores == pytest.approx([0.5 / math.sqrt(3), 2 / math.sqrt(6), 1 / math.sqrt(3), 0])
    flat = model.scores([2, 0], recency_weighted=False)
    assert flat[0] == pytest.approx(1 / math.sqrt(3))


def test_cooccurrence_window_direction_and_self_pairs() -> None:
    directed = CoOccurrence(n_items=3, window=2, symmetric=False).fit([[0, 1, 0, 2]])
    # forward pairs: d=1 (0,1) (1,0) (0,2); d=2 (0,0) skipped, (1,2) ; pop = [2, 1, 1]
    assert directed.neighbours(0)[0].tolist() == [1, 2]
    assert directed.neighbours(1)[0].tolist() == [0, 2]
    assert directed.neighbours(2)[0].size == 0
    # two users never pair across the boundary
    split_users = CoOccurrence(n_items=2, window=3).fit([[0], [1]])
    assert split_users.data.size == 0
    with pytest.raises(ValueError, match="sequences"):
        CoOccurrence(n_items=2).fit([[0, 2]])


def test_cooccurrence_fits_10k_items_100k_interactions_fast() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    lengths = (lengths * (100_000 / lengths.sum())).astype(int) + 1
    seqs = [rng.zipf(1.3, size=n) % 10_000 for n in lengths]
    start = time.perf_counter()
    model = CoOccurrence(n_items=10_000, window=5).fit(seqs)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert model.indptr[-1] == model.data.size > 0
    assert model.scores(seqs[0][-10:]).shape == (10_000,)


def naive_loo_mostpop(events: list[SimpleNamespace], ks: tuple[int, ...]) -> dict[str, float]:
    """A separate, straightforward pure-Python LOO MostPop (no project code)."""
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    for i, e in enumerate(events):
        by_user.setdefault(e.user_id, []).append((e.ts.timestamp(), i, e.item_id))
    sequences = {}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        seq: list[str] = []
        for _, _, item in rows:
            if not seq or seq[-1] != item:
                seq.append(item)
        sequences[user] = seq
    counts: dict[str, int] = {}
    for seq in sequences.values():
        train = seq[:-2] if len(seq) >= 3 else seq[:1]
        for item in train:
            counts[item] = counts.get(item, 0) + 1
    catalogue = sorted({e.item_id for e in events})
    ranked = sorted(catalogue, key=lambda item: (-counts.get(item, 0), item))
    hits = {k: 0.0 for k in ks}
    gains = {k: 0.0 for k in ks}
    n = 0
    for seq in sequences.values():
        if len(seq) < 2:
            continue
        n += 1
        target, history = seq[-1], set(seq[:-1])
        visible = [item for item in ranked if item == target or item not in history]
        rank = visible.index(target)
        for k in ks:
            if rank < k:
                hits[k] += 1
                gains[k] += 1 / math.log2(rank + 2)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = hits[k] / n
        out[f"ndcg@{k}"] = gains[k] / n
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loo_popularity_matches_naive_implementation(seed: int) -> None:
    rng = random.Random(seed)
    events = []
    for _ in range(3000):
        user, item = f"u{rng.randrange(80)}", f"i{rng.randrange(60)}"
        sec = rng.randrange(500)  # many equal timestamps
        events.append(ev(user, item, sec, rng.choice(["click", "click", "purchase"])))
        if rng.random() < 0.2:  # a purchase right after the click: merged away
            events.append(ev(user, item, sec + 0.5, "purchase"))
    expected = naive_loo_mostpop(events, ks=(1, 5, 10))
    got = loo_popularity_eval(events, ks=(1, 5, 10))
    for key, value in expected.items():
        assert round(got[key], 4) == round(value, 4), key


def test_loo_popularity_ranks_users_and_empty() -> None:
    events = [ev("a", "x", 0), ev("b", "x", 0), ev("b", "y", 1)]
    ranks, users = loo_popularity_ranks(events)
    # b: train [x], test y; x is masked, so y is the top remaining item
    assert users == ["b"] and ranks.tolist() == [0]
    assert math.isnan(loo_popularity_eval([ev("a", "x", 0)])["hr@10"])


def read_ml_ratings() -> list[tuple[str, str, float, int]]:
    with (ML_DIR / "ratings.csv").open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return [(u, m, float(r), int(t)) for u, m, r, t in reader]


REFERENCE = {"hr@10": 0.0393, "ndcg@10": 0.0183, "hr@20": 0.0689, "ndcg@20": 0.0258}


def assert_reference(metrics: dict[str, float]) -> None:
    for key, value in REFERENCE.items():
        assert metrics[key] == pytest.approx(value, abs=0.003), key


@pytest.mark.mldata
@pytest.mark.slow
@pytest.mark.skipif(not ML_DIR.is_dir(), reason=f"{ML_DIR} is missing")
def test_mostpop_reference_on_ml_latest_small() -> None:
    ratings = read_ml_ratings()
    assert len(ratings) == 100_836
    clicks = [  # one click event per rating
        SimpleNamespace(
            user_id=u, item_id=m, ts=datetime.fromtimestamp(t, tz=UTC), event_type="click"
        )
        for u, m, _, t in ratings
    ]
    ranks, users = loo_popularity_ranks(clicks)
    assert len(users) == ranks.size == 610
    base = loo_popularity_eval(clicks)
    assert_reference(base)
    # our conventions reproduce the reference to its 4 decimals
    assert {k: round(base[k], 4) for k in REFERENCE} == REFERENCE

    # a purchase for each rating >= 4, directly after its click: merged, numbers unchanged.
    # Same timestamp, next in input order:
    same_ts = []
    for e, (_, _, rating, _) in zip(clicks, ratings, strict=True):
        same_ts.append(e)
        if rating >= 4:
            same_ts.append(SimpleNamespace(**{**vars(e), "event_type": "purchase"}))
    assert loo_popularity_eval(same_ts) == base
    # 1 ms later: ratings share whole seconds, so the clicks of one user's second are spread
    # 2 ms apart (order unchanged) and the purchase lands 1 ms after its own click.
    spread: list[Any] = []
    seen: dict[Any, int] = {}
    for e, (user, _, rating, t) in zip(clicks, ratings, strict=True):
        slot = seen.get((user, t), 0)
        seen[(user, t)] = slot + 1
        ts = e.ts + timedelta(milliseconds=2 * slot)
        spread.append(SimpleNamespace(**{**vars(e), "ts": ts}))
        if rating >= 4:
            purchase_ts = ts + timedelta(milliseconds=1)
            spread.append(
                SimpleNamespace(**{**vars(e), "ts": purchase_ts, "event_type": "purchase"})
            )
    assert loo_popularity_eval(spread) == base
