"""The synthetic world carries the signals it claims: interests, drift, bundles, cold start."""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from schemas.events import ClickEvent, PurchaseEvent
from schemas.items import CatalogueItem
from stream_app.datagen import TOPICS, generate_world, load_events, load_items

USERS, ITEMS, EVENTS, SEED = 300, 1200, 30_000, 7


class World:
    def __init__(self, out: Path, summary: dict[str, Any]) -> None:
        self.out, self.summary = out, summary
        self.items: list[CatalogueItem] = load_items(out / "items.jsonl")
        self.events: list[ClickEvent | PurchaseEvent] = load_events(out / "events.jsonl")
        self.truth: dict[str, Any] = json.loads((out / "world.json").read_text())
        self.item = {it.item_id: it for it in self.items}
        self.topics_of = {k: set(v) for k, v in self.truth["item_topics"].items()}
        self.drift = datetime.fromisoformat(self.truth["drift_ts"].replace("Z", "+00:00"))
        self.by_user: dict[str, list[ClickEvent | PurchaseEvent]] = defaultdict(list)
        for ev in self.events:
            self.by_user[ev.user_id].append(ev)

    def interests(self, user: str, phase: str) -> set[int]:
        return {i["topic"] for i in self.truth["users"][user][phase]}

    def phase(self, ev: ClickEvent | PurchaseEvent) -> str:
        return "after" if ev.ts >= self.drift else "before"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    out = tmp_path_factory.mktemp("world")
    summary = generate_world(out, USERS, ITEMS, EVENTS, seed=SEED)
    return World(out, summary)


def test_files_validate_and_match_the_summary(world: World) -> None:
    s = world.summary
    assert len(world.items) == ITEMS == s["items"]
    assert len(world.events) == EVENTS == s["events"]
    n_buy = sum(isinstance(e, PurchaseEvent) for e in world.events)
    assert s["purchases"] == n_buy and s["clicks"] == EVENTS - n_buy
    assert len({e.event_id for e in world.events}) == EVENTS
    assert len(world.item) == ITEMS
    assert all(re.fullmatch(r"e\d{7}", e.event_id) for e in world.events)
    assert all(re.fullmatch(r"u\d{5}", e.user_id) for e in world.events)
    assert all(e.item_id in world.item for e in world.events)
    assert all(it.ts is not None and it.price and it.price > 0 for it in world.items)
    assert set(world.truth["users"]) >= set(world.by_user)
    assert set(world.topics_of) == set(world.item)


def test_events_are_time_ordered_in_the_span(world: World) -> None:
    ts = [e.ts for e in world.events]
    assert ts == sorted(ts)
    assert ts[0] >= datetime(2026, 1, 1, tzinfo=UTC)
    assert (ts[-1] - ts[0]).days >= 55
    assert (world.out / "events.jsonl").read_text().splitlines()[0].count('Z"') == 1


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    names = ("items.jsonl", "events.jsonl", "world.json")
    generate_world(tmp_path / "a", 50, 100, 2000, seed=1)
    generate_world(tmp_path / "b", 50, 100, 2000, seed=1)
    generate_world(tmp_path / "c", 50, 100, 2000, seed=2)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (
        tmp_path / "c" / "events.jsonl"
    ).read_bytes()


def test_clicks_concentrate_on_latent_interests(world: World) -> None:
    hits, chance = [], []
    for user, evs in world.by_user.items():
        if len(evs) < 20:
            continue
        inside = [
            bool(world.topics_of[e.item_id] & world.interests(user, world.phase(e))) for e in evs
        ]
        hits.append(sum(inside) / len(inside))
        chance.append(len(world.interests(user, "before")) / len(TOPICS))
    assert len(hits) > USERS // 2
    assert statistics.mean(hits) > 0.85
    assert sum(h > 0.7 for h in hits) / len(hits) > 0.95
    assert statistics.mean(hits) > 3 * statistics.mean(chance)


def test_drift_brings_the_new_topic(world: World) -> None:
    grew, present, checked = 0, 0, 0
    for user, evs in world.by_user.items():
        new = world.truth["users"][user]["new_topic"]
        assert new in world.interests(user, "after") - world.interests(user, "before")
        before = [e for e in evs if world.phase(e) == "before"]
        after = [e for e in evs if world.phase(e) == "after"]
        if len(before) < 15 or len(after) < 15:
            continue
        checked += 1
        share_b = sum(new in world.topics_of[e.item_id] for e in before) / len(before)
        share_a = sum(new in world.topics_of[e.item_id] for e in after) / len(after)
        present += share_a > 0
        grew += share_a > share_b + 0.1
    assert checked > USERS // 3
    assert present / checked > 0.95
    assert grew / checked > 0.9


def test_interest_strengths_are_distributions(world: World) -> None:
    for info in world.truth["users"].values():
        for phase in ("before", "after"):
            strengths = [i["strength"] for i in info[phase]]
            assert 1 <= len(strengths) <= 5
            assert sum(strengths) == pytest.approx(1.0, abs=1e-4)
            assert len({i["topic"] for i in info[phase]}) == len(strengths)
    sizes = {len(info["before"]) for info in world.truth["users"].values()}
    assert sizes == {1, 2, 3, 4, 5}


def test_purchases_are_rarer_and_follow_a_click_on_the_same_item(world: World) -> None:
    share = world.summary["purchases"] / EVENTS
    assert 0.08 <= share <= 0.15
    for evs in world.by_user.values():
        for prev, ev in zip(evs, evs[1:], strict=False):
            if isinstance(ev, PurchaseEvent):
                assert isinstance(prev, ClickEvent) and prev.item_id == ev.item_id
                assert ev.ts >= prev.ts and ev.price == world.item[ev.item_id].price
        assert not isinstance(evs[0], PurchaseEvent)


def test_cheaper_items_convert_better(world: World) -> None:
    median = {t.name: t.price for t in TOPICS}
    clicks: defaultdict[bool, int] = defaultdict(int)
    buys: defaultdict[bool, int] = defaultdict(int)
    for ev in world.events:
        item = world.item[ev.item_id]
        assert item.price is not None
        cheap = item.price < median[item.categories[0]]
        (buys if isinstance(ev, PurchaseEvent) else clicks)[cheap] += 1
    assert buys[True] / clicks[True] > 1.3 * buys[False] / clicks[False]


def test_strong_interests_convert_better(world: World) -> None:
    clicks: defaultdict[str, int] = defaultdict(int)
    buys: defaultdict[str, int] = defaultdict(int)
    for user, evs in world.by_user.items():
        for ev in evs:
            ranked = world.truth["users"][user][world.phase(ev)]
            if len(ranked) < 2:
                continue
            topics = world.topics_of[ev.item_id]
            key = "top" if ranked[0]["topic"] in topics else "low"
            if key == "low" and ranked[-1]["topic"] not in topics:
                continue
            (buys if isinstance(ev, PurchaseEvent) else clicks)[key] += 1
    assert buys["top"] / clicks["top"] > 1.15 * buys["low"] / clicks["low"]


def test_activity_is_heavy_tailed(world: World) -> None:
    counts = sorted(len(v) for v in world.by_user.values())
    assert counts[-1] > 5 * statistics.median(counts)


def test_bundles_carry_co_occurrence_beyond_chance(world: World) -> None:
    bundle = {i: b for b, members in enumerate(world.truth["bundles"]) for i in members}
    sizes = {len(m) for m in world.truth["bundles"]}
    assert min(sizes) >= 3 and max(sizes) <= 6
    same, pairs, random_same, random_pairs = 0, 0, 0, 0
    clicks_by_topic: dict[int, list[str]] = defaultdict(list)
    for evs in world.by_user.values():
        last: dict[int, str] = {}
        for ev in evs:
            if not isinstance(ev, ClickEvent):
                continue
            main = world.truth["item_topics"][ev.item_id][0]
            if main in last:
                pairs += 1
                same += bundle[last[main]] == bundle[ev.item_id] and last[main] != ev.item_id
            last[main] = ev.item_id
            clicks_by_topic[main].append(ev.item_id)
    for items in clicks_by_topic.values():
        for a, b in zip(items, items[len(items) // 2 :], strict=False):
            random_pairs += 1
            random_same += bundle[a] == bundle[b] and a != b
    rate, base = same / pairs, random_same / random_pairs
    assert 0.25 < rate < 0.6
    assert rate > 2.5 * base and rate - base > 0.2


def _words(item: CatalogueItem) -> set[str]:
    return set(re.findall(r"[a-z]+", (item.title or "").lower())) - {"and", "for", "by"}


def test_titles_are_similar_within_a_topic(world: World) -> None:
    by_topic: dict[int, list[set[str]]] = defaultdict(list)
    for it in world.items:
        topics = world.truth["item_topics"][it.item_id]
        if len(topics) == 1:
            by_topic[topics[0]].append(_words(it))
    within, across = [], []
    keys = sorted(by_topic)
    for k in keys:
        group = by_topic[k][:12]
        within += [len(a & b) / len(a | b) for a, b in combinations(group, 2)]
    for k1, k2 in combinations(keys, 2):
        a, b = by_topic[k1][0], by_topic[k2][0]
        across.append(len(a & b) / len(a | b))
    assert statistics.mean(within) > 5 * statistics.mean(across)
    assert all(it.categories[0] in {t.name for t in TOPICS} for it in world.items)
    assert 0.05 < sum(len(t) == 2 for t in world.truth["item_topics"].values()) / ITEMS < 0.16


def test_cold_start_items_have_no_events_before_they_appear(world: World) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cold = {it.item_id: it.ts for it in world.items if it.ts and it.ts > start}
    assert cold and len(cold) == world.summary["cold_start_items"]
    assert 0.05 < len(cold) / ITEMS < 0.15
    touched = set()
    for ev in world.events:
        appear = world.item[ev.item_id].ts
        assert appear is not None and ev.ts >= appear, ev
        if ev.item_id in cold:
            touched.add(ev.item_id)
    assert len(touched) > len(cold) // 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"users": 0}, "users"),
        ({"items": 10}, "items"),
        ({"events": 0}, "events"),
        ({"drift_at": 1.5}, "drift_at"),
    ],
)
def test_bad_arguments_name_the_field(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    args = {"users": 5, "items": 30, "events": 10, **kwargs}
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        generate_world(tmp_path, seed=0, **args)


def test_cli_generate_prints_json_summary(tmp_path: Path) -> None:
    import stream_app.cli.data  # noqa: F401  (registers the commands)
    from stream_app.cli.common import cli

    args = ["generate", "--out", str(tmp_path), "--users", "20", "--items", "48"]
    result = CliRunner().invoke(cli, [*args, "--events", "500", "--seed", "5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["events"] == 500 and summary["users"] == 20
    assert len(load_events(tmp_path / "events.jsonl")) == 500
    bad = CliRunner().invoke(cli, ["generate", "--out", str(tmp_path), "--items", "3"])
    assert bad.exit_code != 0 and "--items" in bad.output


@pytest.mark.slow
def test_100k_events_generate_quickly(tmp_path: Path) -> None:
    started = time.perf_counter()
    summary = generate_world(tmp_path, 2000, 5000, 100_000, seed=11)
    elapsed = time.perf_counter() - started
    assert summary["events"] == 100_000
    assert elapsed < 60, f"took {elapsed:.1f} s"
