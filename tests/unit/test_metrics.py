"""Each metric against a tiny case computed by hand (the arithmetic is written out)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.core.metrics import (
    METRICS,
    auc,
    catalogue_coverage,
    category_diversity,
    hit_rate,
    interest_coverage,
    intra_list_diversity,
    mrr,
    ndcg,
    novelty,
    rank_of_target,
    ranking_metrics,
    ranks_of_targets,
)

RANKS = [0, 2, 15]


def test_hit_rate_hand_computed() -> None:
    # k=10: ranks 0 and 2 hit, 15 misses -> 2/3; k=1: only rank 0 -> 1/3
    assert hit_rate(RANKS, 10) == {"hr@10": pytest.approx(2 / 3)}
    assert hit_rate(RANKS, 1) == {"hr@1": pytest.approx(1 / 3)}


def test_ndcg_hand_computed() -> None:
    # (1/log2(2) + 1/log2(4) + 0) / 3 = (1 + 0.5) / 3 = 0.5
    assert ndcg(RANKS, 10) == {"ndcg@10": pytest.approx(0.5)}
    # k=20 also counts rank 15: (1 + 0.5 + 1/log2(17)) / 3
    assert ndcg(RANKS, 20)["ndcg@20"] == pytest.approx((1 + 0.5 + 1 / math.log2(17)) / 3)


def test_mrr_hand_computed() -> None:
    # no cutoff: (1/1 + 1/3 + 1/16) / 3
    assert mrr(RANKS) == {"mrr": pytest.approx((1 + 1 / 3 + 1 / 16) / 3)}
    # cutoff 10: rank 15 is a miss -> (1 + 1/3) / 3
    assert mrr(RANKS, 10) == {"mrr@10": pytest.approx((1 + 1 / 3) / 3)}


def test_not_retrieved_rank_is_a_miss_everywhere() -> None:
    # [-1, 1]: only rank 1 counts -> hr = 1/2, ndcg = (1/log2(3))/2, mrr = (1/2)/2
    assert hit_rate([-1, 1], 10)["hr@10"] == pytest.approx(0.5)
    assert ndcg([-1, 1], 10)["ndcg@10"] == pytest.approx(0.5 / math.log2(3))
    assert mrr([-1, 1])["mrr"] == pytest.approx(0.25)


def test_ranking_metrics_bundle_and_empty() -> None:
    out = ranking_metrics(np.array(RANKS), ks=(10, 20))
    assert list(out) == ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"]
    assert out["hr@20"] == pytest.approx(1.0)
    assert out["ndcg@10"] == pytest.approx(0.5)
    assert all(math.isnan(v) for v in ranking_metrics([]).values())


@pytest.mark.parametrize(
    ("ranks", "k"), [([0, -2], 10), ([0.5], 10), ([[0, 1]], 10), ([0], 0), ([0], True)]
)
def test_ranking_metrics_reject_bad_input(ranks: object, k: int) -> None:
    with pytest.raises(ValueError, match="ranks|k:"):
        hit_rate(ranks, k)  # type: ignore[arg-type]


def test_auc_with_ties_hand_computed() -> None:
    # positives score 0.8, 0.5; negatives 0.5, 0.2, 0.8.
    # pairs (pos, neg): (0.8,0.5)=1 (0.8,0.2)=1 (0.8,0.8)=1/2 (0.5,0.5)=1/2 (0.5,0.2)=1
    # (0.5,0.8)=0 -> 4 / 6
    labels = [1, 1, 0, 0, 0]
    scores = [0.8, 0.5, 0.5, 0.2, 0.8]
    assert auc(labels, scores) == {"auc": pytest.approx(4 / 6)}
    assert auc([1, 0], [0.3, 0.3])["auc"] == pytest.approx(0.5)
    assert auc([True, False], [0.9, 0.1])["auc"] == pytest.approx(1.0)


def test_auc_one_class_is_nan() -> None:
    assert math.isnan(auc([1, 1], [0.2, 0.3])["auc"])
    assert math.isnan(auc([0], [0.2])["auc"])
    with pytest.raises(ValueError, match="labels"):
        auc([2, 0], [0.1, 0.2])


def test_catalogue_coverage_hand_computed() -> None:
    # distinct {1, 2, 3, 7} over a catalogue of 10 -> 0.4
    assert catalogue_coverage([[1, 2, 3], [2, 3, 7], np.array([1])], 10) == {
        "coverage": pytest.approx(0.4)
    }
    with pytest.raises(ValueError, match="n_items"):
        catalogue_coverage([[1]], 0)


def test_intra_list_diversity_hand_computed() -> None:
    # list 1: e1, e2, -e1 -> distances 1-0=1, 1-(-1)=2, 1-0=1 -> mean 4/3
    # list 2: (1,0), (2,0) -> identical direction -> 0 ; list 3: one item, skipped
    lists = [
        np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
        np.array([[1.0, 0.0], [2.0, 0.0]]),
        np.array([[3.0, 4.0]]),
    ]
    assert intra_list_diversity(lists) == {"ild": pytest.approx((4 / 3 + 0) / 2)}
    assert math.isnan(intra_list_diversity([np.zeros((1, 3))])["ild"])


def test_category_diversity_hand_computed() -> None:
    # list 1: {a}, {a,b}, {c}: pairs share a / nothing / nothing -> disjoint 2/3
    #   jaccard: 1-1/2=0.5, 1, 1 -> 2.5/3
    # list 2: {a}, {a}: share a -> 0 ; jaccard 0
    lists: list[list[set[str] | list[str]]] = [[{"a"}, {"a", "b"}, {"c"}], [["a"], ["a"]]]
    assert category_diversity(lists) == {"category_diversity": pytest.approx((2 / 3 + 0) / 2)}
    assert category_diversity(lists, kind="jaccard") == {
        "category_diversity_jaccard": pytest.approx((2.5 / 3 + 0) / 2)
    }
    with pytest.raises(ValueError, match="kind"):
        category_diversity(lists, kind="cosine")


def test_interest_coverage_hand_computed() -> None:
    # user 1: 4 active slots (0..3), list covers {0, 2} (-1 ignored) -> 0.5
    # user 2: active {1, 3}, list covers {3, 0} -> only 3 is active -> 0.5
    # user 3: no active slot -> skipped ; user 4: 1 slot, covered -> 1
    slots = [[0, 0, 2, -1], [3, 0], [0], [0, 0]]
    active: list[int | set[int]] = [4, {1, 3}, 0, 1]
    assert interest_coverage(slots, active) == {"interest_coverage": pytest.approx(2 / 3)}


def test_novelty_hand_computed() -> None:
    # p = [0.5, 0.25, 0.125]: -log2 -> 1, 2, 3. list [0, 1] -> 1.5 ; list [2] -> 3
    p = np.array([0.5, 0.25, 0.125])
    assert novelty([[0, 1], [2]], p) == {"novelty": pytest.approx((1.5 + 3) / 2)}
    with pytest.raises(ValueError, match="item_popularity_prob"):
        novelty([[0]], np.array([0.0]))


def test_registry_names_every_metric() -> None:
    assert set(METRICS) == {
        "hr",
        "ndcg",
        "mrr",
        "auc",
        "coverage",
        "ild",
        "category_diversity",
        "interest_coverage",
        "novelty",
    }
    assert METRICS["ndcg"](RANKS, 10) == ndcg(RANKS, 10)


def test_rank_of_target_ties_and_mask() -> None:
    scores = np.array([0.9, 0.5, 0.7, 0.5, 0.5, 0.1])
    # target 3 (0.5): strictly higher {0, 2} = 2, equal with smaller index {1} = 1 -> 3
    assert rank_of_target(scores, 3) == 3
    # mask 0 and 1: higher {2} = 1, no tied smaller index left -> 1
    assert rank_of_target(scores, 3, [0, 1]) == 1
    # target 4: higher {0, 2}, tied before {1, 3} -> 4 ; target 0 is top
    assert rank_of_target(scores, 4) == 4
    assert rank_of_target(scores, 0) == 0
    # the target is never masked by its own presence in the mask
    assert rank_of_target(scores, 2, [0, 2]) == 0


def test_ranks_of_targets_batched_matches_single() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 30)).astype(np.float64)  # many ties
    targets = rng.integers(0, 30, size=20)
    masks = [rng.choice(30, size=5, replace=False) for _ in range(20)]
    batched = ranks_of_targets(scores, targets, masks)
    single = [rank_of_target(scores[i], int(targets[i]), masks[i]) for i in range(20)]
    assert batched.tolist() == single
    boolean = np.zeros((20, 30), dtype=bool)
    for i, m in enumerate(masks):
        boolean[i, m] = True
    assert ranks_of_targets(scores, targets, boolean).tolist() == single
    # equals the position in a stable sort by (-score, index) over unmasked items
    for i in range(20):
        keep = [j for j in range(30) if j not in set(masks[i].tolist()) or j == targets[i]]
        row = scores[i]
        order = sorted(keep, key=lambda j: (-row[j], j))
        assert order.index(int(targets[i])) == single[i]


def test_ranks_of_targets_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="targets"):
        ranks_of_targets(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="scores"):
        ranks_of_targets(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="masks"):
        ranks_of_targets(np.zeros((1, 3)), [0], np.zeros((1, 2), dtype=bool))
    assert ranks_of_targets(np.zeros((0, 3)), []).shape == (0,)
