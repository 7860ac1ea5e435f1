"""The worker against the REAL broker, run as a subprocess (``streamrec worker``): one
recommendation per good event, dead letters for bad input, cold-start items from the items
topic, model hot-swap and refusal of a corrupt version."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest
from worker_harness import (
    TopicReader,
    copy_registry,
    event_records,
    produce,
    rec_values,
    setup_topics_and_items,
    worker_process,
)

from schemas import Recommendation, Settings
from schemas.dlq import headers_dict
from stream_app.kafka.io import read_lines

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _users_events(world: Path, n_users: int, limit: int) -> list[bytes]:
    """The first ``limit`` events of ``n_users`` users, in file (time) order."""
    lines = read_lines(world / "events.jsonl")
    users: list[str] = []
    out = []
    for line in lines:
        u = json.loads(line)["user_id"]
        if u not in users and len(users) < n_users:
            users.append(u)
        if u in users:
            out.append(line)
        if len(out) >= limit:
            break
    return out


async def test_one_recommendation_per_good_event(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    items = await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    item_ids = {json.loads(x)["item_id"] for x in items}
    events = _users_events(tiny_world, 25, 400)
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs").start()
    try:
        await worker.wait_ready()
        async with TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs:
            sent = await produce(
                kafka_settings, kafka_settings.topics.events, event_records(events)
            )
            await recs.wait_for(lambda r: len(r) >= len(events), 90, "recommendations")
            await asyncio.sleep(2.0)  # anything extra would show up now
            got = list(recs.records)
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert len(got) == len(events)
    docs = rec_values(got)
    ev = [json.loads(x) for x in events]
    assert sorted(d["trigger_event_id"] for d in docs) == sorted(e["event_id"] for e in ev)
    current = (tiny_registry / "CURRENT").read_text().strip()
    purchased_before: dict[str, set[str]] = defaultdict(set)  # event id -> user's purchases
    seen: dict[str, set[str]] = defaultdict(set)
    for e in ev:
        if e["event_type"] == "purchase":
            seen[e["user_id"]].add(e["item_id"])
        purchased_before[e["event_id"]] = set(seen[e["user_id"]])
    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for r, d in zip(got, docs, strict=True):
        Recommendation.model_validate(d)
        assert r.key.decode() == d["user_id"]
        assert d["model_version"] == current
        ids = [i["item_id"] for i in d["items"]]
        assert len(ids) == 10
        assert len(set(ids)) == len(ids)
        assert set(ids) <= item_ids
        assert not set(ids) & purchased_before[d["trigger_event_id"]]
        assert d["latency_ms"] >= 0
        by_user[d["user_id"]].append((r.partition, r.offset, d["trigger_event_id"]))
    # per user: one partition, and recommendations in the order the events were produced
    where = {e["event_id"]: (s.partition, s.offset) for e, s in zip(ev, sent, strict=True)}
    for user, rows in by_user.items():
        assert len({p for p, _, _ in rows}) == 1, user
        in_order = [t for _, _, t in sorted(rows)]
        assert in_order == sorted(in_order, key=lambda t: where[t]), user
    assert metrics["streamrec_events_in_total"] == len(events)
    assert metrics["streamrec_recommendations_out_total"] == len(events)


async def test_bad_input_goes_to_the_dlq_and_the_worker_keeps_going(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    good = _users_events(tiny_world, 10, 120)
    base = json.loads(good[0])
    huge = json.dumps({**base, "event_id": "huge-1", "context": {"blob": "x" * 2_000_000}}).encode()
    bad: list[tuple[bytes | None, bytes | None, str]] = [
        (b"u1", b"{not json", "json"),
        (b"u1", b"\xff\xfe\x00garbage", "json"),
        (b"u2", json.dumps({**base, "event_id": "no-user", "user_id": None}).encode(), "schema"),
        (
            b"u2",
            json.dumps({**base, "event_id": "bad-type", "event_type": "view"}).encode(),
            "schema",
        ),
        (
            b"u3",
            json.dumps({**base, "event_id": "naive-ts", "ts": "2026-01-01T00:00:00"}).encode(),
            "schema",
        ),
        (b"u3", None, "schema"),
        (
            base["user_id"].encode(),
            json.dumps({**base, "event_id": "ghost-item", "item_id": "no-such-item"}).encode(),
            "unknown_item",
        ),
        (base["user_id"].encode(), huge, "too_large"),
    ]
    records: list[tuple[bytes | None, bytes | None]] = []
    expected_reason: dict[int, str] = {}
    for i, line in enumerate(good):
        records.append((json.loads(line)["user_id"].encode(), line))
        if i % 15 == 7 and bad:
            key, value, reason = bad.pop(0)
            expected_reason[len(records)] = reason
            records.append((key, value))
    assert not bad
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs").start()
    try:
        h0 = await worker.wait_ready()
        async with (
            TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs,
            TopicReader(kafka_settings, kafka_settings.topics.dlq) as dlq,
        ):
            sent = await produce(kafka_settings, kafka_settings.topics.events, records)
            await recs.wait_for(lambda r: len(r) >= len(good), 90, "recommendations")
            await dlq.wait_for(lambda r: len(r) >= len(expected_reason), 30, "dead letters")
            await asyncio.sleep(2.0)
            got_recs, got_dlq = list(recs.records), list(dlq.records)
        h1 = worker.health()
        metrics = worker.metrics()
        assert worker.alive()
    finally:
        worker.stop()
    assert h1 is not None and h1["pid"] == h0["pid"] == worker.pid and h1["status"] == "ok"
    assert sorted(d["trigger_event_id"] for d in rec_values(got_recs)) == sorted(
        json.loads(x)["event_id"] for x in good
    )
    assert len(got_dlq) == len(expected_reason)
    by_offset = {(s.partition, s.offset): (i, s) for i, s in enumerate(sent)}
    for r in got_dlq:
        h = headers_dict(list(r.headers))
        assert h["source.topic"] == kafka_settings.topics.events
        i, s = by_offset[(int(h["source.partition"]), int(h["source.offset"]))]
        assert i in expected_reason
        assert h["error.reason"] == expected_reason[i], (
            h,
            (records[i][1] or b"")[:80] or None,
        )
        assert h["error.class"] and h["error.message"]
        assert (r.value or b"") == (records[i][1] or b"")  # the ORIGINAL bytes
        assert r.key == records[i][0]
    assert metrics["streamrec_events_in_total"] == len(records)
    for reason in set(expected_reason.values()):
        n = sum(1 for v in expected_reason.values() if v == reason)
        assert metrics[f'streamrec_dlq_total{{reason="{reason}"}}'] == n


async def test_new_catalogue_item_is_recommended_without_retraining(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    """New items produced mid-stream, each the near-twin (by text) of an item the user clicks:
    with no id embedding for them, only their text can put them next to their twins."""
    items = [
        json.loads(x)
        for x in await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    ]
    cat = items[0]["categories"][0]
    cluster = [it for it in items if it["categories"] and it["categories"][0] == cat][:6]
    assert len(cluster) == 6
    user = "cold-start-fan"
    ts0 = 1_780_000_000_000

    def click(n: int, item_id: str) -> tuple[bytes, bytes]:
        ev = {
            "event_id": f"cs-{n}",
            "user_id": user,
            "item_id": item_id,
            "ts": ts0 + n * 60_000,
            "event_type": "click",
        }
        return user.encode(), json.dumps(ev).encode()

    twins = {
        f"new-item-{j}": {
            **cluster[j],
            "item_id": f"new-item-{j}",
            "title": cluster[j]["title"] + " II",
            "ts": "2026-06-01T00:00:00Z",
        }
        for j in range(3)
    }
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs").start()
    try:
        await worker.wait_ready()
        async with TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs:
            first = [click(n, it["item_id"]) for n, it in enumerate(cluster[3:] * 2)]
            await produce(kafka_settings, kafka_settings.topics.events, first)
            await recs.wait_for(lambda r: len(r) >= len(first), 60)
            assert all("new-item" not in json.dumps(d) for d in rec_values(recs.records))
            await produce(
                kafka_settings,
                kafka_settings.topics.items,
                [(k.encode(), json.dumps(v).encode()) for k, v in twins.items()],
            )
            # no wait for the catalogue: an event on a new item right away must still find it
            # (the worker holds it until the catalogue feed has the item); the user's clicks
            # on the twins' originals come after it, so the new items are in the catalogue
            # by then and only their text can place them
            more = [click(100, "new-item-0")]
            more += [click(101 + j, cluster[j]["item_id"]) for j in range(3)]
            await produce(kafka_settings, kafka_settings.topics.events, more)
            await recs.wait_for(lambda r: len(r) >= len(first) + len(more), 60)
            docs = {d["trigger_event_id"]: d for d in rec_values(recs.records)[len(first) :]}
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert metrics["streamrec_catalogue_items"] == len(items) + len(twins)
    assert set(docs) == {json.loads(v)["event_id"] for _, v in more}
    served = [
        (j, i)
        for j in range(3)
        for i in docs[f"cs-{101 + j}"]["items"]
        if i["item_id"] == f"new-item-{j}"
    ]
    assert served, "no new item appeared next to the item it is the text twin of: " + json.dumps(
        {k: [(i["item_id"], i["interest"]) for i in d["items"]] for k, d in docs.items()}
    )
    assert any(i["interest"] >= 0 for _, i in served), "only ever shown as exploration"


async def test_model_hot_swap_and_corrupt_version_refused(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    from schemas import ModelUpdate
    from stream_app.registry import Registry

    reg_dir = copy_registry(tiny_registry, tmp_path / "registry")
    reg = Registry(reg_dir)
    v1 = reg.current()
    assert v1 is not None
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = _users_events(tiny_world, 40, 900)
    worker = worker_process(kafka_settings, reg_dir, tmp_path / "logs").start()

    def publish_copy(make_current: bool) -> tuple[str, Path]:
        version = reg.copy_version(v1, make_current, parent=v1)
        return version, reg.path(version)

    async def notice(version: str) -> None:
        from datetime import UTC, datetime

        n = ModelUpdate(model_version=version, parent_version=v1, published_at=datetime.now(UTC))
        await produce(
            kafka_settings,
            kafka_settings.topics.model_updates,
            [(None, n.model_dump_json().encode())],
        )

    try:
        await worker.wait_ready()
        async with TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs:
            stream = asyncio.create_task(
                produce(
                    kafka_settings, kafka_settings.topics.events, event_records(events), rate=60
                )
            )
            await recs.wait_for(lambda r: len(r) >= 100, 60)
            v2, _ = await asyncio.to_thread(publish_copy, True)
            await notice(v2)
            await recs.wait_for(
                lambda r: any(json.loads(x.value)["model_version"] == v2 for x in r[-20:]),
                60,
                f"swap to {v2}",
            )
            v3, v3_dir = await asyncio.to_thread(publish_copy, False)
            graph = v3_dir / "item_tower.onnx"  # every engine has one
            graph.write_bytes(graph.read_bytes()[:-64] + b"\0" * 64)  # tampered, same size
            (reg_dir / "CURRENT").write_text(v3 + "\n")  # moved by hand: no verification
            await notice(v3)
            for _ in range(100):
                if (worker.health() or {}).get("refused", {}).get(v3):
                    break
                await asyncio.sleep(0.2)
            await stream
            await recs.wait_for(lambda r: len(r) >= len(events), 90, "all recommendations")
            docs = rec_values(recs.records)
            by_partition: dict[int, list[str]] = defaultdict(list)
            for r in sorted(recs.records, key=lambda r: (r.partition, r.offset)):
                by_partition[r.partition].append(json.loads(r.value)["model_version"])
        health = worker.health()
        metrics = worker.metrics()
        assert worker.alive()
    finally:
        worker.stop()
    assert sorted(d["trigger_event_id"] for d in docs) == sorted(
        json.loads(x)["event_id"] for x in events
    )  # nothing lost across the swap
    assert {d["model_version"] for d in docs} == {v1, v2}
    for versions in by_partition.values():  # one switch per partition, never back, never v3
        first_v2 = versions.index(v2) if v2 in versions else len(versions)
        assert set(versions[:first_v2]) <= {v1} and set(versions[first_v2:]) <= {v2}
    assert health is not None and health["model_version"] == v2
    assert "sha256" in health["refused"][v3]
    assert metrics["streamrec_model_refusals_total"] >= 1
    assert metrics["streamrec_model_swaps_total"] == 1
    assert metrics[f'streamrec_model_info{{version="{v2}"}}'] == 1
