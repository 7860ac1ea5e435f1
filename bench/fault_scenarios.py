"""Fault scenarios through the REAL broker and real ``streamrec worker`` processes, measured
from outside (Kafka topics and the workers' HTTP endpoints only; nothing here knows the
engine). ``bench/faults.py`` runs them at full size and prints the table;
``tests/integration/test_faults.py`` runs them small in CI and asserts on the outcomes.

- ``fuzz``: a clean phase of good events, the same number of good events mixed with
  generated bad messages (``stream_app.datagen.badinput``) at the same good-event rate, and a
  clean phase again (the mixed p99 is compared with the mean of the two clean ones).
- ``failover``: two workers with standby replicas under a steady rate; one is killed with
  SIGKILL; how long until its partitions are served again by the other, what was lost, what
  was delivered twice (and marked as such), p99 meanwhile; then the same events once more.
- ``restore``: a table of N users in the changelog (real states written by a worker, copied
  under N keys), the data dir gone: a new worker's start -> ready, every sampled state intact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import (
    Collector,
    SentAt,
    TopicTail,
    bench_worker,
    load_events,
    produce_items,
    producer,
    send_open_loop,
)
from schemas.dlq import ERROR_MESSAGE, ERROR_REASON, SOURCE_OFFSET, SOURCE_PARTITION
from schemas.settings import Settings
from stream_app.datagen.badinput import bad_messages, edge_case_user_id
from stream_app.kafka.io import ensure_topics, read_compacted
from stream_app.worker.process import WorkerProcess

Message = tuple[bytes | None, bytes | None, str]
BATCH_SIZE = 64  # serving.batch_size, as the worker benchmark runs it
STEADY_GAP_S = 4.0  # > faust's commit interval (2.8 s): older events were committed


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    limit: float
    at_most: bool = True  # value <= limit (else: value == limit)

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value == self.limit

    def describe(self) -> str:
        op = "<=" if self.at_most else "=="
        return f"{self.name} {self.value:g} {op} {self.limit:g}: {'met' if self.met else 'NOT met'}"


@dataclass
class Outcome:
    scenario: str
    events_in: int
    recommended: int | None  # None: the scenario sends no events (restore)
    in_dlq: int | None
    lost: int
    duplicates: int = 0
    marked: int = 0  # duplicates that carried the redelivery header
    seconds: float | None = None  # failover / restore
    p99_ms: float | None = None
    checks: list[Check] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return all(c.met for c in self.checks)


@dataclass
class Stage:
    """What every scenario shares: base settings (broker, partitions), the world, the model
    and a directory for worker data and logs."""

    base: Settings
    world: Path
    registry: Path
    runs: Path
    ort_threads: int = 1
    _events: list[tuple[bytes, bytes, str]] = field(default_factory=list)

    def settings(self, name: str) -> Settings:
        """Settings with topics and an app id of this scenario's own."""
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        topics = ("events", "items", "recommendations", "dlq", "model_updates")
        return self.base.with_overrides(
            app_id=f"faults-{tag}", **{f"topics.{t}": f"faults-{tag}-{t}" for t in topics}
        )

    def worker(self, settings: Settings, name: str, **dotted: Any) -> WorkerProcess:
        """A worker of this scenario (``dotted``: more settings, e.g. serving.standby_replicas)."""
        runs = self.runs / settings.app_id
        changed = settings.with_overrides(**dotted)
        return bench_worker(changed, self.registry, runs, name, self.ort_threads, BATCH_SIZE)

    def events(self) -> list[tuple[bytes, bytes, str]]:
        if not self._events:
            self._events = load_events(self.world)
        return self._events


async def _ready(*workers: WorkerProcess) -> None:
    for w in workers:
        w.start()
    for w in workers:
        await w.wait_ready()


async def _setup(stage: Stage, s: Settings) -> None:
    await ensure_topics(s)
    await produce_items(s, stage.world)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _fresh(
    events: list[tuple[bytes, bytes, str]], tag: str, odd: float, seed: int
) -> list[Message]:
    """The events with new ids (and, for a share ``odd``, an unusual but valid user id)."""
    rng = random.Random(seed)
    out: list[Message] = []
    for _, line, eid in events:
        doc = json.loads(line)
        doc["event_id"] = f"{tag}-{eid}"
        if rng.random() < odd:
            doc["user_id"] = edge_case_user_id(rng)
        out.append((doc["user_id"].encode(), json.dumps(doc).encode(), doc["event_id"]))
    return out


class DeadLetters(TopicTail):
    """The DLQ topic from its end: source (partition, offset) -> (reason, message)."""

    topic_of = "dlq"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.got: dict[tuple[int, int], tuple[str, str]] = {}

    def handle(self, m: Any, now: float) -> None:
        h = {k: v.decode("utf-8", "replace") for k, v in m.headers or ()}
        where = (int(h[SOURCE_PARTITION]), int(h[SOURCE_OFFSET]))
        self.got[where] = (h.get(ERROR_REASON, ""), h.get(ERROR_MESSAGE, ""))

    async def wait_for(self, where: list[tuple[int, int]], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(w not in self.got for w in where):
            await asyncio.sleep(0.2)
        return sum(1 for w in where if w not in self.got)


# -- fuzz -------------------------------------------------------------------------------------
async def fuzz(
    stage: Stage,
    n_bad: int,
    n_good: int,
    rate: float,
    max_bytes: int,
    seed: int = 1,
    kinds: frozenset[str] | None = None,
) -> Outcome:
    s = stage.settings("fuzz")
    await _setup(stage, s)
    pool = stage.events()
    warm = _fresh(pool[:200], "warm", 0.0, seed)
    clean = _fresh(pool[200 : 200 + n_good], "clean", 0.0, seed)
    good = _fresh(pool[200 + n_good : 200 + 2 * n_good], "mixed", 0.05, seed)
    after = _fresh(pool[200 + 2 * n_good : 200 + 3 * n_good], "after", 0.0, seed)
    templates = [json.loads(v or b"{}") for _, v, _ in good]
    bad = bad_messages(n_bad, templates, max_bytes, seed, kinds)
    # bad messages spread evenly between the good ones; the good ones keep the clean rate
    slots = sorted(
        [(i / n_good, 0, i) for i in range(n_good)] + [(j / n_bad, 1, j) for j in range(n_bad)]
    )
    mixed: list[Message] = [
        good[i] if kind == 0 else (bad[i].key, bad[i].value, f"bad-{i}") for _, kind, i in slots
    ]
    w = stage.worker(s, "worker", max_message_bytes=max_bytes)
    col, dead = Collector(s), DeadLetters(s)
    try:
        await _ready(w)
        await col.start()
        await dead.start()
        for phase in (warm, clean):
            await send_open_loop(s, phase, rate)
            await col.wait_for([m[2] for m in phase], 60 + len(phase) / 50)
        t0 = time.monotonic()
        sent = await send_open_loop(s, mixed, rate * len(mixed) / n_good)
        by_id = {x.id: x for x in sent}
        bad_at = [(by_id[f"bad-{j}"].partition, by_id[f"bad-{j}"].offset) for j in range(n_bad)]
        timeout = 120 + len(mixed) / 50
        await col.wait_for([m[2] for m in good], timeout)
        missing_bad = await dead.wait_for(bad_at, max(10.0, timeout - (time.monotonic() - t0)))
        await send_open_loop(s, after, rate)  # clean again: the machine's drift shows here
        await col.wait_for([m[2] for m in after], 60 + len(after) / 50)
        alive = w.alive()
        counters = _counters(w)
    finally:
        await col.stop()
        await dead.stop()
        w.stop()
    wrong = [
        (bad[j].kind, dead.got[at][0])
        for j, at in enumerate(bad_at)
        if at in dead.got and (dead.got[at][0] not in bad[j].reasons or not dead.got[at][1])
    ]
    lat = {
        name: [col.got[m[2]][1] for m in phase if m[2] in col.got]
        for name, phase in (("clean", clean), ("mixed", good), ("after", after))
    }
    # the mixed phase against the clean runs before and after it (a noisy, shared machine)
    p99_clean = (_pct(lat["clean"], 99) + _pct(lat["after"], 99)) / 2
    p99_mixed = _pct(lat["mixed"], 99)
    ratio = p99_mixed / p99_clean if p99_clean else float("nan")
    missing_kinds = sorted({bad[j].kind for j, at in enumerate(bad_at) if at not in dead.got})
    per_kind: dict[str, int] = {}
    for b in bad:
        per_kind[b.kind] = per_kind.get(b.kind, 0) + 1
    all_good = [m[2] for m in (*warm, *clean, *good, *after)]
    recommended = sum(1 for i in all_good if i in col.got)
    lost = len(all_good) - recommended + missing_bad
    return Outcome(
        "fuzz: bad input mixed with good",
        len(warm) + len(clean) + len(mixed) + len(after),
        recommended,
        n_bad - missing_bad,
        lost,
        p99_ms=p99_mixed,
        checks=[
            Check("lost", lost, 0, at_most=False),
            Check("dead letters with a wrong or empty reason", len(wrong), 0, at_most=False),
            Check("worker crashed", 0 if alive else 1, 0, at_most=False),
            Check("good p99 vs clean run (x)", round(ratio, 2), 2.0),
        ],
        detail={
            "bad": n_bad,
            "good": n_good,
            "rate_good": rate,
            "max_message_bytes": max_bytes,
            "kinds": per_kind,
            "wrong_reasons": wrong[:20],
            "not_in_dlq": missing_kinds,
            **{f"p50_{k}_ms": _pct(v, 50) for k, v in lat.items()},
            **{f"p99_{k}_ms": _pct(v, 99) for k, v in lat.items()},
            "odd_user_ids": sum(1 for m in good if not m[0] or not m[0].startswith(b"u")),
            "worker_counters": counters,
        },
    )


def _counters(w: WorkerProcess) -> dict[str, float]:
    got = w.metrics()
    keep = ("streamrec_events_in_total", "streamrec_dlq_total")
    return {k: v for k, v in got.items() if k.startswith(keep)}


# -- failover ---------------------------------------------------------------------------------
def _partitions(w: WorkerProcess) -> dict[str, list[int]]:
    """The worker's ``/health`` partitions (none while it does not answer)."""
    health = w.health() or {}
    return dict(health.get("partitions") or {"active": [], "standby": []})


async def _settled(workers: list[WorkerProcess], partitions: int, timeout: float = 120.0) -> None:
    """Until the workers' active partitions are disjoint and cover the events topic."""
    deadline = time.monotonic() + timeout
    active: list[list[int]] = []
    while time.monotonic() < deadline:
        active = [_partitions(w)["active"] for w in workers]
        flat = sorted(p for a in active for p in a)
        if flat == list(range(partitions)) and all(active):
            return
        await asyncio.sleep(0.5)
    msg = f"partitions never settled over {len(workers)} workers: {active}"
    raise RuntimeError(msg)


async def failover(
    stage: Stage, rate: float, seconds: float, kill_at: float, standby: int = 1, resend: int = 200
) -> Outcome:
    s = stage.settings("failover")
    await _setup(stage, s)
    standbys = {"serving.standby_replicas": standby}
    survivor = stage.worker(s, "worker-a", **standbys)
    victim = stage.worker(s, "worker-b", **standbys)
    pool = stage.events()
    warm = _fresh(pool[:1000], "warm", 0.0, 0)
    main = _fresh(pool[1000 : 1000 + int(rate * seconds)], "main", 0.0, 0)
    col, dlq = Collector(s), DeadLetters(s)
    try:
        await _ready(survivor, victim)
        await _settled([survivor, victim], s.topics.partitions)
        await col.start()
        await dlq.start()
        await send_open_loop(s, warm, 200)
        await col.wait_for([m[2] for m in warm], 60)
        sending = asyncio.create_task(send_open_loop(s, main, rate))
        await asyncio.sleep(kill_at)
        parts = _partitions(victim)["active"]
        before_kill = _partitions(survivor)
        t_kill = time.time()
        victim.kill9()
        taken = asyncio.create_task(_taken_over(survivor, s.topics.partitions))
        sent = await sending
        reassigned_s = (await taken) - t_kill
        ids = [x.id for x in sent]
        missing = await col.wait_for(ids, 120)
        after = _partitions(survivor)
        states = _state_check(survivor, [*warm, *main], s.topics.partitions, parts)
        again = warm[:resend]  # the same events once more: every list must say "redelivery"
        await send_open_loop(s, again, 200)
        await col.wait_for([m[2] for m in again], 30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(col.counts[m[2]] < 2 for m in again):
            await asyncio.sleep(0.2)
        resent_marked = sum(1 for m in again if col.flagged.get(m[2], 0) >= 1)
        got = survivor.metrics()
        withheld = got.get("streamrec_acks_withheld_total", 0.0)
        gaps = got.get("streamrec_offset_gaps_total", 0.0)
        repairs = got.get("streamrec_fetch_repairs_total", 0.0)
    finally:
        await col.stop()
        await dlq.stop()
        survivor.stop()
        victim.stop()
    # every event must end as a list; one that did not: was it dead-lettered, where was it
    unlisted = [x for x in sent if x.id not in col.got]
    dead = [x for x in unlisted if (x.partition, x.offset) in dlq.got]
    served = _served_again(sent, col, parts, t_kill)
    fail_s = max(served.values()) if served and len(served) == len(parts) else float("inf")
    e2e = {x.id: (col.got[x.id][0] - x.intended) * 1000 for x in sent if x.id in col.got}
    during = [e2e[x.id] for x in sent if t_kill <= x.intended <= t_kill + fail_s and x.id in e2e]
    # steady state: sent well before the kill (the last seconds' events waited for it too)
    before = [e2e[x.id] for x in sent if x.intended < t_kill - STEADY_GAP_S and x.id in e2e]
    main_ids = set(ids)
    dups = sum(c - 1 for i, c in col.counts.items() if i in main_ids)
    marked = sum(n for i, n in col.flagged.items() if i in main_ids)
    return Outcome(
        f"failover: kill -9 one of 2 workers at {rate:.0f} ev/s",
        len(warm) + len(main),
        len(main) - missing,
        len(dead),
        missing - len(dead),
        dups,
        marked,
        seconds=fail_s,
        p99_ms=_pct(during, 99),
        checks=[
            Check("failover s", round(fail_s, 2), 15.0),
            Check("lost", missing - len(dead), 0, at_most=False),
            Check("good events dead-lettered", len(dead), 0, at_most=False),
            Check("users whose state lost or doubled an event", states["wrong"], 0, at_most=False),
            Check("first lists marked as redelivery", col.flagged_first, 0, at_most=False),
            Check("resent events not marked", len(again) - resent_marked, 0, at_most=False),
        ],
        detail={
            "victim_partitions": parts,
            "survivor_before": before_kill,
            "survivor_after": after,
            "reassigned_s": reassigned_s,
            "served_again_s": served,
            "p99_before_ms": _pct(before, 99),
            "p99_during_ms": _pct(during, 99),
            "standby_replicas": standby,
            "session_timeout_s": s.serving.session_timeout_s,
            "states_checked": states["checked"],
            "resent": len(again),
            "resent_marked": resent_marked,
            # events faust acked unhandled in the rebalance, kept uncommitted (worker/acks.py)
            "acks_withheld": withheld,
            # events-topic offsets the survivor's agent never got (faust fetch skips)
            "offset_gaps": gaps,
            # fetch skips the survivor's consumer caught and sought back over (worker/acks.py)
            "fetch_repairs": repairs,
            # the events without a list (at most 20): where they were, and on which side
            "unlisted": [
                {
                    "id": x.id,
                    "partition": x.partition,
                    "offset": x.offset,
                    "victim_partition": x.partition in parts,
                    "sent_after_kill_s": round(x.intended - t_kill, 2),
                    "dlq": dlq.got.get((x.partition, x.offset)),
                }
                for x in unlisted[:20]
            ],
        },
    )


async def _taken_over(w: WorkerProcess, partitions: int, timeout: float = 120.0) -> float:
    """When ``w`` reports every events partition as its own (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = await asyncio.to_thread(_partitions, w)  # off the loop: arrivals are timed
        if len(mine["active"]) == partitions:
            return time.time()
        await asyncio.sleep(0.1)
    return float("inf")


def _served_again(
    sent: list[SentAt], col: Collector, parts: list[int], t_kill: float
) -> dict[int, float]:
    """Per partition of the killed worker: seconds from the kill to the first list for an
    event sent after it (only the other worker can have made that one)."""
    out: dict[int, float] = {}
    for x in sent:
        if x.partition in parts and x.intended > t_kill + 0.05 and x.id in col.got:
            t = col.got[x.id][0] - t_kill
            out[x.partition] = min(out.get(x.partition, t), t)
    return out


def _state_check(
    w: WorkerProcess, sent: list[Message], partitions: int, parts: list[int], sample: int = 150
) -> dict[str, int]:
    """Users of the killed worker's partitions: the state the survivor serves counts each of
    their events exactly once."""
    from aiokafka.partitioner import DefaultPartitioner

    per_user: dict[bytes, set[str]] = {}
    for key, _, eid in sent:
        per_user.setdefault(key or b"", set()).add(eid)
    pick = DefaultPartitioner()
    all_parts = list(range(partitions))
    users = [u for u in sorted(per_user) if pick(u, all_parts, all_parts) in parts][:sample]
    wrong = 0
    for u in users:
        doc = _state(w, u.decode())
        wrong += doc is None or doc["n_events"] != len(per_user[u])
    return {"checked": len(users), "wrong": wrong}


def _state(w: WorkerProcess, user: str) -> dict[str, Any] | None:
    try:
        status, body = w.get(f"/state/{urllib.parse.quote(user, safe='')}")
    except OSError:
        return None
    return dict(json.loads(body)) if status == 200 else None


# -- restore ----------------------------------------------------------------------------------
async def restore(stage: Stage, users: int, seed_users: int = 400, sample: int = 300) -> Outcome:
    s = stage.settings("restore")
    await _setup(stage, s)
    first = stage.worker(s, "worker-1")
    pool = stage.events()
    chosen = {k for k, _, _ in pool[: seed_users * 40]}
    chosen = set(sorted(chosen)[:seed_users])
    seed = _fresh([e for e in pool if e[0] in chosen], "seed", 0.0, 0)
    col = Collector(s)
    t0 = time.monotonic()
    try:
        await _ready(first)
        empty_start_s = time.monotonic() - t0
        await col.start()
        await send_open_loop(s, seed, None)
        await col.wait_for([m[2] for m in seed], 120)
    finally:
        await col.stop()
        first.stop()
    changelog = f"{s.app_id}-user-state-changelog"
    real = await read_compacted(s, changelog)
    produce_s, table = await _fill_changelog(s, changelog, real, users)
    shutil.rmtree(first.settings.data_dir)  # the node is gone; a new one starts with nothing
    second = stage.worker(s, "worker-2")
    t0 = time.monotonic()
    try:
        await _ready(second)
        restore_s = time.monotonic() - t0
        rng = random.Random(3)
        keys = rng.sample(sorted(table), min(sample, len(table)))
        wrong = sum(
            1
            for k in keys
            if (doc := _state(second, k.decode())) is None
            or doc.get("sha256") != hashlib.sha256(table[k]).hexdigest()
        )
    finally:
        second.stop()
    return Outcome(
        f"restore: {users:,}-user table from its changelog, data dir deleted",
        len(table),
        None,
        None,
        wrong,
        seconds=restore_s,
        checks=[
            Check("restore s (start -> ready)", round(restore_s, 1), 60.0),
            Check("sampled states missing or changed", wrong, 0, at_most=False),
        ],
        detail={
            "users": len(table),
            "real_states": len(real),
            "state_bytes_mean": int(np.mean([len(v) for v in real.values()])) if real else 0,
            "changelog_fill_s": produce_s,
            "empty_table_start_s": empty_start_s,
            "sampled": len(keys),
        },
    )


async def _fill_changelog(
    s: Settings, topic: str, real: dict[bytes, bytes], users: int
) -> tuple[float, dict[bytes, bytes]]:
    """The real states, plus copies under new user ids up to ``users`` keys (keyed records:
    the default partitioner puts each where the worker's own writes would go)."""
    states = list(real.values())
    table = dict(real)
    prod = producer(s)
    await prod.start()
    t0 = time.monotonic()
    try:
        futs = []
        for i in range(users - len(real)):
            key, value = f"restored-{i:07d}".encode(), states[i % len(states)]
            table[key] = value
            futs.append(await prod.send(topic, value, key=key))
            if len(futs) >= 20_000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return time.monotonic() - t0, table
