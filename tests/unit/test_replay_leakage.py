"""Replay never lets a recommendation see its own event or anything after it, and refuses a
model whose training data holds the targets it would evaluate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from schemas.events import ClickEvent
from schemas.items import CatalogueItem
from schemas.manifest import Manifest
from schemas.settings import ServingSettings
from stream_app.core.catalogue import ItemStore
from stream_app.datagen.jsonl import load_events, load_items
from stream_app.replay import leakage
from stream_app.replay.baselines import PopStream
from stream_app.replay.catalogue import Catalogue
from stream_app.replay.runner import run_replay
from stream_app.replay.stream import StreamConfig, replay_events, run_stream, warmup_cut
from tests.manifests import draft
from tests.settings import replay_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)


# -- manifest refusals ------------------------------------------------------------------
def _manifest(split: str, sha: str = "a" * 64, until: float | None = 100.0) -> Manifest:
    d = draft()
    data = d.training.data.model_copy(
        update={"split": split, "events_sha256": sha, "train_until": until}
    )
    return Manifest(
        **dict(d.model_copy(update={"training": d.training.model_copy(update={"data": data})})),
        version="v0009",
        created_at=T0,
        status="published",
        files={},
    )


def test_loo_refuses_a_time_split_model_saying_why() -> None:
    with pytest.raises(leakage.LeakageError, match=r"training.data.split='time', expected 'loo'"):
        leakage.check_loo(_manifest("time"), "a" * 64)


def test_loo_refuses_a_model_trained_on_another_events_file() -> None:
    with pytest.raises(leakage.LeakageError, match="events_sha256"):
        leakage.check_loo(_manifest("loo", sha="b" * 64), "a" * 64)
    leakage.check_loo(_manifest("loo"), "a" * 64)  # same file: accepted


def test_stream_refuses_a_model_trained_past_the_first_scored_event() -> None:
    with pytest.raises(leakage.LeakageError, match="train_until"):
        leakage.check_stream(_manifest("time", until=100.5), first_scored_ts=100.0)
    with pytest.raises(leakage.LeakageError, match="no training.data.train_until"):
        leakage.check_stream(_manifest("time", until=None), first_scored_ts=100.0)
    leakage.check_stream(_manifest("time", until=100.0), first_scored_ts=100.0)


def test_replay_refuses_the_time_split_model_under_loo(
    tiny_world: Path, tiny_registry: Path
) -> None:
    with pytest.raises(leakage.LeakageError, match="--protocol loo.*training.data.split='time'"):
        run_replay(
            replay_settings(tiny_registry, protocol="loo"),
            tiny_world / "items.jsonl",
            tiny_world / "events.jsonl",
        )


def test_replay_refuses_a_warm_up_shorter_than_the_training_window(
    tiny_world: Path, tiny_registry: Path
) -> None:
    # the model trained on the first ~80 % of the log: scoring from 30 % would score its targets
    with pytest.raises(leakage.LeakageError, match="train_until .* after the first scored event"):
        run_replay(
            replay_settings(tiny_registry, warmup_frac=0.3),
            tiny_world / "items.jsonl",
            tiny_world / "events.jsonl",
        )


# -- the stream protocol never shows an event (or the future) to its own list ----------------
def test_lists_are_computed_from_strictly_earlier_events_only(
    tiny_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instrument the engine: at every recommend call, each state must hold only events that
    precede the event it is scored on; the store must hold only items that already appeared,
    and its popularity must equal the popularity of the events before the chunk. (The
    replay logic, with the deterministic fake model: no model files needed.)"""
    from stream_app.replay import systems
    from stream_app.replay.catalogue import Feed
    from tests.fakes import fake_loaded_model

    items = load_items(tiny_world / "items.jsonl")
    events = load_events(tiny_world / "events.jsonl")
    cat = Catalogue.build(items, [e.item_id for e in events])
    lm = fake_loaded_model(cat)
    cat.text = lm.text
    engine = systems.EngineStream(Feed(lm, cat), cat, {"streamrec": ServingSettings()})
    evs = replay_events(events, cat)
    position = {e.lite.event_id: n for n, e in enumerate(evs)}
    checked = {"states": 0, "chunks": 0}
    calls: list[tuple] = []
    real = engine.rec.recommend_with_picks

    def spy(states, now):  # type: ignore[no-untyped-def]
        store = engine.feed.store
        calls.append(
            (
                [list(s.event_ids) for s in states],
                store.pop[: store.size].copy(),
                store.pop_ref,
                [store.ids[r] for r in np.flatnonzero(store.alive)],
                now,
            )
        )
        return real(states, now)

    monkeypatch.setattr(engine.rec, "recommend_with_picks", spy)
    real_step = engine.step

    def step(chunk, now, scored):  # type: ignore[no-untyped-def]
        calls.clear()
        out = real_step(chunk, now, scored)
        if not calls:
            return out
        state_ids, pop, pop_ref, alive, t = calls[0]
        first = position[chunk[0].lite.event_id]
        for ids, i in zip(state_ids, engine.last_live, strict=True):
            pos = position[chunk[i].lite.event_id]
            assert all(position[x] < pos for x in ids), "a state saw its event or a later one"
            checked["states"] += 1
        appear = dict(zip(cat.ids, cat.added_ts, strict=True))
        assert all(appear[x] <= t <= chunk[0].lite.ts for x in alive), "a future item was listed"
        ref = ItemStore(lm.model.text_dim, lm.model.feat_dim, capacity=len(cat))
        ref.upsert(
            engine.feed.store.ids[: len(pop)],
            np.zeros((len(pop), lm.model.text_dim)),
            np.zeros((len(pop), lm.model.feat_dim)),
        )
        for e in evs[:first]:
            w = lm.params.purchase_weight if e.purchase else 1.0
            ref.bump(ref.row[e.lite.item_id], e.lite.ts, w)
        scale = 0.5 ** ((ref.pop_ref - pop_ref) / ref.pop_half_life_s)
        np.testing.assert_allclose(pop * scale, ref.pop[: len(pop)], rtol=1e-9, atol=1e-12)
        checked["chunks"] += 1
        return out

    monkeypatch.setattr(engine, "step", step)
    run = run_stream(evs, cat, [engine], StreamConfig(ks=(10,), chunk=64))
    assert checked["chunks"] > 5 and checked["states"] == run.counts["scored_events"] > 500


def test_a_burst_on_a_new_item_is_invisible_to_the_lists_it_is_scored_against() -> None:
    """Leakage would change the outcome here: 30 users all click a never-clicked item at the
    same moment; a replay whose popularity saw the batch (or the event) before scoring would
    list it at the top for the burst. The correct replay scores no hit on it."""
    items = [CatalogueItem(item_id=f"i{n:02d}", title=f"item {n}", ts=T0) for n in range(40)]
    events, n = [], 0
    for day in range(20):  # history: everyone clicks the usual items
        for u in range(30):
            n += 1
            events.append(
                ClickEvent(
                    event_id=f"e{n}",
                    user_id=f"u{u}",
                    item_id=f"i{(u + day) % 39:02d}",
                    event_type="click",
                    ts=T0 + timedelta(days=day, minutes=u),
                )
            )
    burst = T0 + timedelta(days=25)
    for u in range(30):
        n += 1
        events.append(
            ClickEvent(
                event_id=f"e{n}", user_id=f"u{u}", item_id="i39", event_type="click", ts=burst
            )
        )
    cat = Catalogue.build(items, [e.item_id for e in events])
    evs = replay_events(events, cat)
    pop = PopStream(cat, 10)
    run = run_stream(evs, cat, [pop], StreamConfig(ks=(10,), warmup_frac=0.5, chunk=10_000))
    res = run.results["pop"]
    assert len(res.ranks) == len(evs) - warmup_cut(evs, 0.5)
    assert res.ranks[-30:] == [-1] * 30  # the burst item was never listed before its clicks
    assert all(cat.index["i39"] not in lst for lst in res.lists)
    # the counterfactual: popularity that includes the burst puts the item first
    leaky = pop.pop.scores(burst.timestamp(), len(cat))
    assert int(np.argmax(leaky)) == cat.index["i39"]
