"""How close to a bare aiokafka loop can the worker's Kafka I/O get? (issue 11, item 7)

    .venv/bin/python bench/io_study.py                       # all variants, a local broker
    .venv/bin/python bench/io_study.py --events 20000 --only bare,faust-send,faust-batch
    .venv/bin/python bench/io_study.py --broker localhost:9092 --json out.json

One run: a broker (started here from the cached jars unless ``--broker``), one events topic
(``--partitions``, default 8 like the worker) filled once with ``--events`` events of ~200
bytes keyed by user, then each variant in its own process (``bench/io_variants.py``) with its
own consumer group, output topic (same partitions) and state; payloads ~1.5 KB. Measured per
variant: events/s and CPU us per event of the consuming process (utime + stime from /proc,
all threads) between its first event and its last outputs acked; then checked by this
process: outputs on the broker == events (nothing lost, nothing doubled) and the group's
committed offsets == the end of the events topic (the commit happened, after the acks), and
for variants with state, the state a replacement worker rebuilds from the changelog (faust: a
new worker recovering the table into an empty data dir) == what the events say it must be.
Ratios are against the bare loop of the same run. The broker and this driver share the
machine's CPUs with the variant, as in ``bench/worker_bench.py``.

orjson is not a dependency of the project yet: the orjson variants need it installed, or in
``var/pydeps`` (``pip install --target var/pydeps orjson``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "var" / "pydeps"))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.harness import console, free_port  # noqa: E402
from bench.io_payload import build_us, encode_us, events  # noqa: E402

# name -> (what it is, spec options). "out": the variant produces one record per event.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "bare": ("aiokafka getmany -> send per event -> gather -> commit", {"kind": "bare"}),
    "bare-batch": (
        "aiokafka getmany -> BatchPublisher -> commit",
        {"kind": "bare", "send": "batch"},
    ),
    "faust-send": (
        "take_events(64, 5ms), topic.send per event, await all (today)",
        {"send": "send"},
    ),
    "faust-send+table": (
        "... + faust Table get/set per user per take",
        {"send": "send", "table": "faust"},
    ),
    "faust-send+table+json": (
        "... + stdlib json recommendation",
        {"send": "send", "table": "faust", "payload": "json"},
    ),
    "faust-batch": (
        "take_events, BatchPublisher on app.producer's aiokafka producer",
        {"send": "batch"},
    ),
    "faust-batch+table": (
        "... + faust Table get/set per user per take",
        {"send": "batch", "table": "faust"},
    ),
    "faust-batch+direct": (
        "... + store get/put, changelog via BatchPublisher",
        {"send": "batch", "table": "direct"},
    ),
    "faust-batch+direct+json": (
        "... + stdlib json recommendation",
        {"send": "batch", "table": "direct", "payload": "json"},
    ),
    "faust-batch+direct+orjson": (
        "... + orjson recommendation",
        {"send": "batch", "table": "direct", "payload": "orjson"},
    ),
    "faust-batch+rawdb+orjson": (
        "... + the partition's rocksdict DB itself, one WriteBatch per partition",
        {"send": "batch", "table": "rawdb", "payload": "orjson"},
    ),
    "faust-batch+rawdb+orjson-nosensor": (
        "... without faust's Monitor sensor",
        {"send": "batch", "table": "rawdb", "payload": "orjson", "sensors": False},
    ),
    "fetch:take_events": ("faust fetch path alone: take_events, empty body", {}),
    "fetch:take": ("take(64, 5ms) (values)", {"mode": "take"}),
    "fetch:events": ("async for event in stream.events()", {"mode": "events"}),
    "fetch:noack": ("stream.noack().events(), acked by us every 64", {"mode": "noack"}),
    "fetch:nosensor": ("take_events without faust's Monitor sensor", {"sensors": False}),
    "fetch:poll2000": (
        "take_events, broker_max_poll_records=2000",
        {"faust": {"broker_max_poll_records": 2000}},
    ),
    "fetch:buffer16k": (
        "take_events, stream_buffer_maxsize=16384",
        {"faust": {"stream_buffer_maxsize": 16384}},
    ),
    "fetch:fetch1mb": (
        "take_events, consumer_max_fetch_size=1 MiB",
        {"faust": {"consumer_max_fetch_size": 1024 * 1024}},
    ),
    "fetch:commit10s": (
        "take_events, broker_commit_interval=10 s, every 100k",
        {"faust": {"broker_commit_interval": 10.0, "broker_commit_every": 100_000}},
    ),
    "batch-acks1": (
        "faust-batch+direct+orjson with producer_acks=1",
        {"send": "batch", "table": "direct", "payload": "orjson", "faust": {"producer_acks": 1}},
    ),
    "batch-linger0": (
        "faust-batch+direct+orjson with producer_linger=0",
        {
            "send": "batch",
            "table": "direct",
            "payload": "orjson",
            "faust": {"producer_linger": 0.0},
        },
    ),
    "plain-seq": (
        "plain, each batch's acks awaited before the next fetch (like an agent body)",
        {"kind": "plain", "payload": "orjson", "depth": 0},
    ),
    "plain": (
        "aiokafka consumer + rocksdict + own changelog, all via BatchPublisher, orjson",
        {"kind": "plain", "payload": "orjson"},
    ),
}
QUICK = (
    "bare",
    "faust-send",
    "faust-send+table",
    "faust-batch",
    "faust-batch+direct+orjson",
    "fetch:take_events",
    "plain",
)


def produces(spec: dict[str, Any]) -> bool:
    return spec["kind"] != "faust" or spec.get("send", "none") != "none"


async def admin_create(broker: str, topics: list[NewTopic]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics(topics)
    finally:
        await admin.close()
    prod = AIOKafkaProducer(bootstrap_servers=broker)
    await prod.start()
    try:
        for t in topics:
            await prod.partitions_for(t.name)
    finally:
        await prod.stop()


async def fill(broker: str, topic: str, evs: list[tuple[bytes, bytes]]) -> dict[str, list[int]]:
    """Produce the events; return what every user's state must end as: [last offset, events]."""
    prod = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5, acks="all")
    await prod.start()
    try:
        futs = [await prod.send(topic, v, key=k) for k, v in evs]
        metas = await asyncio.gather(*futs)
    finally:
        await prod.stop()
    expected: dict[str, list[int]] = {}
    for (key, _), meta in zip(evs, metas, strict=True):
        prev = expected.get(key.decode())
        expected[key.decode()] = [meta.offset, prev[1] + 1 if prev else 1]
    return expected


async def changelog_state(broker: str, topic: str, partitions: int) -> dict[str, list[int]]:
    """The plain prototype's state as a replacement worker would rebuild it: the last
    changelog record per user."""
    c = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        state: dict[str, list[int]] = {}
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                for m in msgs:
                    state[m.key.decode()] = [int(x) for x in m.value.split(b"|")[1:3]]
        return state
    finally:
        await c.stop()


async def run_child(spec: dict[str, Any], log: Path, timeout: float) -> int | str:
    child = {k: v for k, v in spec.items() if k != "expected"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "io_variants.py"), json.dumps(child)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "timeout"


async def state_ok(spec: dict[str, Any], work: Path, timeout: float) -> bool | None:
    """Rebuild the variant's state from its changelog as a replacement worker would (faust:
    a new worker of the same app with an empty data dir recovers the table) and compare it
    with what the events say it must be."""
    if spec["kind"] == "plain":
        got = await changelog_state(spec["broker"], spec["changelog_topic"], spec["partitions"])
    elif spec.get("table", "none") != "none":
        rec = {**spec, "recover": True, "result": spec["result"] + ".state"}
        rec["data_dir"] = spec["data_dir"] + "-recovered"
        rc = await run_child(rec, Path(rec["result"] + ".log"), timeout)
        if rc != 0:
            console.print(f"[red]recovery check exit {rc}[/red]")
            return False
        got = {
            k: [int(x) for x in v]
            for k, v in json.loads(Path(rec["result"]).read_text())["state"].items()
        }
    else:
        return None
    return got == spec["expected"]


async def end_offsets(broker: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=broker)
    await c.start()
    try:
        ends = await c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await c.stop()


async def committed(broker: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {p: (await c.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)}
    finally:
        await c.stop()


async def run_variant(
    name: str, base: dict[str, Any], work: Path, timeout: float
) -> dict[str, Any]:
    what, opts = VARIANTS[name]
    tag = uuid.uuid4().hex[:8]
    spec = {
        "kind": "faust",
        **base,
        **opts,
        "group": f"io-{tag}",
        "result": str(work / f"{tag}.json"),
    }
    spec["out_topic"] = f"io-out-{tag}"
    spec["changelog_topic"] = f"io-state-{tag}"
    spec["data_dir"] = str(work / tag)
    Path(spec["data_dir"]).mkdir(parents=True)
    P = base["partitions"]
    new = [NewTopic(spec["out_topic"], P, 1)]
    if spec["kind"] == "plain":
        new.append(
            NewTopic(spec["changelog_topic"], P, 1, topic_configs={"cleanup.policy": "compact"})
        )
    await admin_create(base["broker"], new)
    log = work / f"{tag}.log"
    rc = await run_child(spec, log, timeout)
    if rc != 0 or not Path(spec["result"]).exists():
        console.print(f"[red]{name}: exit {rc}[/red]\n{log.read_text()[-2500:]}")
        return {"variant": name, "what": what, "error": f"exit {rc}"}
    res = json.loads(Path(spec["result"]).read_text())
    ends = await end_offsets(base["broker"], base["in_topic"], P)
    done = await committed(base["broker"], spec["group"], base["in_topic"], P)
    outs = (
        sum((await end_offsets(base["broker"], spec["out_topic"], P)).values())
        if produces(spec)
        else None
    )
    n = res["events"]
    return {
        "variant": name,
        "what": what,
        "events": n,
        "events_per_s": n / res["seconds"],
        "cpu_us_per_event": res["cpu_s"] * 1e6 / n,
        "outputs": outs,
        "outputs_ok": outs is None or outs == base["events"],
        "committed_ok": done == ends,
        "state_ok": await state_ok(spec, work, timeout),
    }


async def study(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="io-study-", dir=args.workdir))
    broker, data = args.broker, None
    if broker is None:
        from schemas.settings import Settings
        from stream_app.kafka import local as kafka_local

        s = Settings()
        port, data = free_port(pair=True), work / "kafka"
        console.print(f"starting a local Kafka broker on :{port}")
        await asyncio.to_thread(
            kafka_local.start, port, data, s.kafka_version, s.cache_dir, partitions=args.partitions
        )
        broker = f"localhost:{port}"
    try:
        in_topic = f"io-events-{uuid.uuid4().hex[:8]}"
        await admin_create(broker, [NewTopic(in_topic, args.partitions, 1)])
        expected = await fill(broker, in_topic, events(args.events, args.users))
        base = {
            "broker": broker,
            "in_topic": in_topic,
            "partitions": args.partitions,
            "events": args.events,
            "expected": expected,
        }
        names = args.only.split(",") if args.only else list(QUICK if args.quick else VARIANTS)
        rows = []
        for name in names:
            if name not in VARIANTS:
                msg = f"--only: unknown variant {name!r} (known: {', '.join(VARIANTS)})"
                raise SystemExit(msg)
            t0 = time.monotonic()
            runs = [await run_variant(name, base, work, args.timeout) for _ in range(args.repeat)]
            rows.append(median_row(runs))
            console.print(f"{name}: done in {time.monotonic() - t0:.0f} s")
        return rows
    finally:
        if data is not None:
            from stream_app.kafka import local as kafka_local

            await asyncio.to_thread(kafka_local.stop, data)


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for ``--repeat`` runs: median events/s and CPU; a check passes only if it
    passed in every run; an error in any run is the row's error."""
    bad = next((r for r in runs if "error" in r), None)
    if bad is not None:
        return bad
    row = dict(runs[0])
    for k in ("events_per_s", "cpu_us_per_event"):
        row[k] = statistics.median(r[k] for r in runs)
    for k in ("outputs_ok", "committed_ok"):
        row[k] = all(r[k] for r in runs)
    states = [r["state_ok"] for r in runs]
    row["state_ok"] = None if states[0] is None else all(states)
    row["runs"] = len(runs)
    return row


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    bare = next((r for r in rows if r["variant"] == "bare" and "error" not in r), None)
    t = Table(
        title=f"Kafka I/O paths: {args.events:,} events, {args.partitions} partitions, "
        f"median of {args.repeat}, "
        "~200 B in, ~1.5 KB out, acks=all unless named"
    )
    for col in (
        "variant",
        "events/s",
        "x bare",
        "CPU us/ev",
        "CPU vs bare",
        "outputs",
        "committed",
        "state",
        "what",
    ):
        t.add_column(col, justify="left" if col in ("variant", "what") else "right")
    for r in rows:
        if "error" in r:
            t.add_row(
                r["variant"], "-", "-", "-", "-", "-", "-", "-", f"{r['what']} ({r['error']})"
            )
            continue
        ratio = f"{r['events_per_s'] / bare['events_per_s']:.2f}" if bare else "-"
        cpu = f"{r['cpu_us_per_event'] / bare['cpu_us_per_event']:.1f}x" if bare else "-"
        outs = "-" if r["outputs"] is None else ("ok" if r["outputs_ok"] else f"{r['outputs']} !")
        t.add_row(
            r["variant"],
            f"{r['events_per_s']:,.0f}",
            ratio,
            f"{r['cpu_us_per_event']:.0f}",
            cpu,
            outs,
            "ok" if r["committed_ok"] else "NO",
            {None: "-", True: "ok", False: "NO"}[r["state_ok"]],
            r["what"],
        )
    console.print(t)
    j, js = encode_us("json")
    o, os_ = encode_us("orjson")
    console.print(
        f"recommendation JSON ({js} B, dict build {build_us():.1f} us included): "
        f"json {j:.1f} us, orjson {o:.1f} us ({j / o:.1f}x)"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--broker", help="host:port of a running broker (default: start one)")
    p.add_argument("--events", type=int, default=30_000, help="events produced once")
    p.add_argument("--users", type=int, default=5_000, help="distinct keys of the events")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--only", help="comma-separated variant names")
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    p.add_argument("--repeat", type=int, default=1, help="runs per variant (median shown)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per variant")
    p.add_argument("--workdir", default=str(ROOT / "var"), help="parent of the run's scratch dir")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(study(args))
    report(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
