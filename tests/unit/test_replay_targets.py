"""The replay's target table: each verdict follows from the rows, each target appears only
when its systems are in the run."""

from __future__ import annotations

import math

import pytest

from stream_app.replay.targets import targets


def row(ndcg: float, **extra: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "ndcg@10_se": 0.004, **extra}


def test_every_target_decided_from_a_full_loo_run():
    systems = {
        "streamrec": row(0.0677, auc_purchase=0.542, **{"ild@10": 0.60}),
        "no-diversity": row(0.0668, **{"ild@10": 0.50}),
        "single-interest": row(0.0610),
        "single-interest-no-div": row(0.0618),
        "ranker-only": row(0.0668),
        "ranker-v1": row(0.0580, auc_purchase=0.504),
        "pop": row(0.0183, auc_purchase=0.577),
        "cooc": row(0.0513, auc_purchase=0.521),
    }
    got = {t.name: t for t in targets(systems)}
    assert len(got) == 8  # no ground truth in loo: no true-interest coverage target
    met = {name: t.met for name, t in got.items()}
    assert met["plain top-K within 2% of the model over the whole catalogue (NDCG@10)"]
    assert met["served list within 4% of the model over the whole catalogue (NDCG@10)"]
    assert met["served list beats ranker-v1 (NDCG@10)"] and met["served list beats cooc (NDCG@10)"]
    purchase = got["p_purchase ranks purchases above every baseline (AUC)"]
    assert not purchase.met and purchase.measured == "0.542 vs pop 0.577"
    assert met["K interests vs one, plain top-K: NDCG@10 >= +3 %"]  # +8.1 %
    assert met["K interests vs one, served: not below (NDCG@10)"]
    div = got["diversification: ILD@10 >= +15 % over plain top-K for <= 2 % NDCG@10"]
    assert div.met and div.measured == "ILD +20.0%, NDCG +1.3%"
    assert "0.0677 ± 0.0040 vs 0.0513 ± 0.0040" in got["served list beats cooc (NDCG@10)"].measured


@pytest.mark.parametrize(
    ("served", "plain", "ild_served", "met"),
    [
        (0.098, 0.100, 0.58, True),  # -2 %, +16 %
        (0.097, 0.100, 0.60, False),  # -3 %: costs too much
        (0.099, 0.100, 0.56, False),  # +12 %: too little diversity
    ],
)
def test_the_diversification_verdict_needs_both_halves(served, plain, ild_served, met):
    systems = {
        "streamrec": row(served, **{"ild@10": ild_served}),
        "no-diversity": row(plain, **{"ild@10": 0.50}),
    }
    (t,) = targets(systems)
    assert t.met is met


def test_targets_need_their_systems_and_skip_nan():
    assert targets({"pop": row(0.1)}) == []
    only = targets({"streamrec": row(0.2, auc_purchase=math.nan), "pop": row(0.1)})
    assert only == []  # no cooc, no purchase AUC of ours: nothing to decide
    stream = {
        "streamrec": row(0.1688),
        "no-diversity": row(0.1729, **{"true_interest_coverage@10": 0.501}),
        "single-interest-no-div": row(0.1677, **{"true_interest_coverage@10": 0.489}),
        "cooc": row(0.1732),
    }
    got = {t.name: t.met for t in targets(stream)}
    assert got == {
        "served list beats cooc (NDCG@10)": False,
        "K interests vs one, plain top-K: NDCG@10 >= +3 %": True,  # +3.1 %
        "K interests vs one, plain top-K: true interest coverage@10 >= +20 %": False,
    }
