"""The loo protocol: MostPop equals a straightforward independent computation, the replayed
model reproduces the training pipeline's own held-out numbers (same states, same scores), and
a full run puts every system on the same users."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from stream_app.core import metrics
from stream_app.core.baselines import CoOccurrence
from stream_app.datagen.jsonl import load_events, load_items
from stream_app.replay import loo
from stream_app.replay.runner import run_replay
from tests.settings import replay_settings


def _naive_mostpop(events: list, ks: tuple[int, ...]) -> dict[str, float]:
    """Leave-one-out MostPop written out plainly: no shared code with the replay."""
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    for n, e in enumerate(events):
        by_user.setdefault(e.user_id, []).append((e.ts.timestamp(), n, e.item_id))
    sequences = {}
    for user, rows in by_user.items():
        rows.sort()
        seq: list[str] = []
        for _, _, item in rows:
            if not seq or seq[-1] != item:
                seq.append(item)
        sequences[user] = seq
    counts: Counter[str] = Counter()
    for seq in sequences.values():
        train = seq[:-2] if len(seq) >= 3 else seq[:1] if len(seq) == 2 else seq
        counts.update(train)
    catalogue = sorted({e.item_id for e in events})
    position = {item: i for i, item in enumerate(catalogue)}
    ranks = []
    for seq in sequences.values():
        if len(seq) < 2:
            continue
        target, seen = seq[-1], set(seq[:-1]) - {seq[-1]}
        rank = 0
        for item in catalogue:
            if item in seen or item == target:
                continue
            if counts[item] > counts[target] or (
                counts[item] == counts[target] and position[item] < position[target]
            ):
                rank += 1
        ranks.append(rank)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = sum(r < k for r in ranks) / len(ranks)
        out[f"ndcg@{k}"] = sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return out


def test_loo_popularity_equals_a_straightforward_computation(tiny_world: Path) -> None:
    events = load_events(tiny_world / "events.jsonl")
    data = loo.prepare(events, load_items(tiny_world / "items.jsonl"))
    got = metrics.ranking_metrics(np.asarray(loo.eval_pop(data, 20).ranks), (10, 20))
    want = _naive_mostpop(events, (10, 20))
    assert len(data.users) > 150
    for key, value in want.items():
        assert round(got[key], 4) == round(value, 4), key
    assert loo.loo_reference_check(loo.eval_pop(data, 20), (10, 20), events)


def test_loo_cooc_ranks_the_history_scores_with_the_history_masked(tiny_world: Path) -> None:
    events = load_events(tiny_world / "events.jsonl")
    data = loo.prepare(events, load_items(tiny_world / "items.jsonl"), max_users=40)
    res = loo.eval_cooc(data, 20)
    idx = data.cat.index
    seqs = [[idx[x.item_id] for x in s] for s in data.split.train_sequences().values()]
    model = CoOccurrence(len(data.cat), 5).fit(seqs)
    tie = data.train_pop / data.train_pop.max() * 1e-6
    for u in (0, 7, 39):
        s = model.scores(data.history[u], n_recent=5) + tie
        want = metrics.rank_of_target(s, int(data.targets[u]), data.masks[u])
        assert res.ranks[u] == want
        assert not set(res.lists[u].tolist()) & set(data.masks[u].tolist())


@pytest.fixture(scope="module")
def loo_registry(
    tmp_path_factory: pytest.TempPathFactory, tiny_world: Path, tiny_bert: str
) -> Path:
    from tests.model_versions import train_registry

    reg = tmp_path_factory.mktemp("loo-registry")
    return train_registry(reg, tiny_world, model_path=tiny_bert, split="loo")


def test_replayed_model_reproduces_the_pipelines_held_out_numbers(
    tiny_world: Path, loo_registry: Path
) -> None:
    """Ranking the whole catalogue by the click head from replayed states gives exactly the
    training pipeline's LOO test numbers: no skew between training and replay."""
    from stream_app.core.interests import InterestParams
    from stream_app.registry import Registry
    from stream_app.replay.catalogue import Feed, load_model

    reg = Registry(loo_registry)
    version = reg.require_current()
    data = loo.prepare(
        load_events(tiny_world / "events.jsonl"), load_items(tiny_world / "items.jsonl")
    )
    lm = load_model(reg, version, data.cat, InterestParams(), device="cpu")
    feed = Feed(lm, data.cat)
    feed.add_all()
    click, _ = loo.EngineLoo(lm, {})._full_scores(
        feed, loo.user_states(lm, data), feed.store.rows_for(data.cat.ids)
    )
    got = metrics.ranking_metrics(metrics.ranks_of_targets(click, data.targets, data.masks))
    trained = reg.manifest(version).metrics
    # p_click = sigmoid(logit) in float32 saturates near 1, so a top-ranked pair can tie where
    # torch's logits do not: allow one user's rank to move, no more
    one_user = 1.0 / len(data.users)
    for key in ("hr@10", "ndcg@10", "hr@20", "ndcg@20"):
        assert got[key] == pytest.approx(trained[f"streamrec.{key}"], abs=one_user), key


def test_loo_replay_runs_every_system_on_the_same_users(
    tiny_world: Path, loo_registry: Path
) -> None:
    out = run_replay(
        replay_settings(loo_registry, protocol="loo"),
        tiny_world / "items.jsonl",
        tiny_world / "events.jsonl",
        sweep_lambdas=(0.5, 1.0),
    )
    assert out.pop_equals_loo_popularity_eval is True
    systems = out.systems
    assert list(systems) == ["streamrec", "no-diversity", "ranker-only", "pop", "cooc"]
    n = out.counts["users_scored"]
    assert all(row["examples"] == n for row in systems.values())
    for row in systems.values():
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= row["hr@20"] <= 1
        assert 0 < row["auc_click"] < 1
    assert "interest_coverage@10" in systems["streamrec"]
    assert "interest_coverage@10" not in systems["ranker-only"]
    # with the same scores, diversifying the list raises intra-list diversity
    assert systems["streamrec"]["ild@10"] > systems["no-diversity"]["ild@10"]
    assert "by_event_type" not in systems["pop"]


def test_the_loo_model_is_refused_for_the_stream_protocol(
    tiny_world: Path, loo_registry: Path
) -> None:
    from stream_app.replay.leakage import LeakageError

    with pytest.raises(LeakageError, match="--protocol stream: training.data.train_until"):
        run_replay(
            replay_settings(loo_registry, protocol="stream"),
            tiny_world / "items.jsonl",
            tiny_world / "events.jsonl",
        )


@pytest.mark.mldata
def test_movielens_mostpop_reproduces_the_reference(ml_small: Path, tmp_path: Path) -> None:
    """../shared/data/README.md: MostPop HR@10 0.0393, NDCG@10 0.0183, HR@20 0.0689,
    NDCG@20 0.0258 over 610 users (LOO, full ranking, history masked)."""
    from stream_app.datagen.convert import convert_movielens

    convert_movielens(ml_small, tmp_path)
    data = loo.prepare(load_events(tmp_path / "events.jsonl"), load_items(tmp_path / "items.jsonl"))
    got = metrics.ranking_metrics(np.asarray(loo.eval_pop(data, 20).ranks), (10, 20))
    assert len(data.users) == 610
    reference = {"hr@10": 0.0393, "ndcg@10": 0.0183, "hr@20": 0.0689, "ndcg@20": 0.0258}
    for key, value in reference.items():
        assert got[key] == pytest.approx(value, abs=0.003), key
