"""The consuming processes of ``bench/io_study.py``, one variant per process (run as
``python bench/io_variants.py SPEC_JSON``). Each consumes the study's pre-produced events from
the start with its own consumer group, does its variant's work, and writes one JSON result:
events, seconds and CPU seconds (utime + stime of this process, all threads, from /proc)
between the first event received and the last event's outputs acked.

Kinds: ``bare`` (aiokafka consumer -> producer loop), ``faust`` (an agent over
``take_events``/``take``/``events()``), ``plain`` (the alternative: aiokafka consumer +
rocksdict state + our own changelog topic, everything through ``BatchPublisher``). Options
(``spec``): ``send`` = none | send (one ``send`` per event) | batch (``BatchPublisher``);
``table`` = none | faust (``table.get`` + ``table[k] = v`` per user per take) | direct
(store get/put + changelog through ``BatchPublisher``); ``payload`` = fixed | json | orjson;
``faust`` = extra faust settings; ``sensors`` = false removes faust's Monitor sensor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
import weakref
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "var" / "pydeps"))  # orjson for the study, when not installed

from bench.io_payload import PAYLOAD_BYTES, STATE_BYTES, encoder  # noqa: E402
from stream_app.worker.publish import BatchPublisher, Record, Sent, last_offsets  # noqa: E402
from stream_app.worker.state_io import StateIO  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TAKE, WITHIN_S = 64, 0.005
COMMIT_EVERY_S = 1.0
MAX_BYTES = 16 * 1024 * 1024


def cpu_s() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Meter:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec, self.n, self.target = spec, 0, spec["events"]
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0

    def got(self, k: int) -> bool:
        """Count ``k`` events done; True once all are."""
        if self.n == 0:
            self.t0, self.c0 = time.perf_counter(), cpu_s()
        self.n += k
        if self.n >= self.target and not self.t1:
            self.t1, self.c1 = time.perf_counter(), cpu_s()
            return True
        return False

    def write(self, **extra: Any) -> None:
        out = {"events": self.n, "seconds": self.t1 - self.t0, "cpu_s": self.c1 - self.c0, **extra}
        Path(self.spec["result"]).write_text(json.dumps(out))


def make_payload(spec: dict[str, Any]) -> Any:
    if spec.get("payload", "fixed") == "fixed":
        pad = b"r" * PAYLOAD_BYTES
        return lambda key, i: pad
    return encoder(spec["payload"])


def publisher(producer: Any) -> BatchPublisher:
    return BatchPublisher(producer, max_message_bytes=1_000_000, max_request_bytes=MAX_BYTES)


# -- bare and plain: aiokafka only ----------------------------------------------------------
async def run_aiokafka(spec: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    meter, payload = Meter(spec), make_payload(spec)
    consumer = AIOKafkaConsumer(
        spec["in_topic"],
        bootstrap_servers=spec["broker"],
        group_id=spec["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_BYTES,
        max_poll_records=spec.get("max_poll", 500),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=spec["broker"], acks=spec.get("acks", "all"), linger_ms=2
    )
    await producer.start()
    await consumer.start()
    state = PlainState(spec) if spec["kind"] == "plain" else None
    pub = publisher(producer)
    out, depth = spec["out_topic"], spec.get("depth", 4)
    inflight: deque[tuple[Any, dict[Any, int]]] = deque()  # (acks awaitable, offsets), in order
    acked: dict[Any, int] = {}
    done, last_commit = False, time.monotonic()

    async def settle(keep: int) -> None:
        """Wait for the oldest batches' acks until ``keep`` remain; their offsets may commit."""
        while len(inflight) > keep or (inflight and inflight[0][0].done()):
            task, offsets = inflight.popleft()
            await task
            acked.update(offsets)

    while not done:
        batches = await consumer.getmany(timeout_ms=100)
        msgs = [m for ms in batches.values() for m in ms]
        if not msgs:
            continue
        meter.got(0)
        if spec.get("send") == "batch" or state is not None:
            records = [Record(out, m.key, payload(m.key, i)) for i, m in enumerate(msgs)]
            if state is not None:
                records += state.update(msgs)
            acks = asyncio.ensure_future(wait_records(pub, await pub.send(records), state))
        else:
            futs = [
                await producer.send(out, payload(m.key, i), key=m.key) for i, m in enumerate(msgs)
            ]
            acks = asyncio.ensure_future(asyncio.gather(*futs))  # type: ignore[arg-type]
        inflight.append((acks, {tp: ms[-1].offset + 1 for tp, ms in batches.items()}))
        await settle(depth)
        done = meter.n + len(msgs) >= meter.target
        if done:
            await settle(0)
        meter.got(len(msgs))
        if done or time.monotonic() - last_commit > COMMIT_EVERY_S:
            await consumer.commit(dict(acked))  # only offsets whose outputs are acked
            last_commit = time.monotonic()
    meter.write()
    await consumer.stop()
    await producer.stop()


async def wait_records(pub: BatchPublisher, sent: Sent, state: PlainState | None) -> None:
    await pub.wait(sent)
    if state is not None:
        state.persisted(last_offsets([r for recs, _ in sent.batches for r in recs]))


class PlainState:
    """The alternative's state: one rocksdict DB per input partition, reads and writes per
    user per batch (WriteBatch), the changelog written by us (same partition as the input),
    its last acked offset stored in the partition's DB like faust does."""

    OFFSET_KEY = b"__changelog_offset__"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.dir = Path(spec["data_dir"])
        self.changelog = spec["changelog_topic"]
        self.dbs: dict[int, Any] = {}

    def db(self, partition: int) -> Any:
        from rocksdict import Options, Rdict

        if partition not in self.dbs:
            path = str(self.dir / f"state-{partition}.db")
            self.dbs[partition] = Rdict(path, options=Options(raw_mode=True))
        return self.dbs[partition]

    def update(self, msgs: list[Any]) -> list[Record]:
        from rocksdict import WriteBatch

        writes: dict[int, Any] = {}
        records = []
        for key, (m, n) in per_user(msgs).items():
            db = self.db(m.partition)
            value = pad(state_value(key, db.get(key), m.offset, n))
            wb = writes.get(m.partition)
            if wb is None:
                wb = writes[m.partition] = WriteBatch(raw_mode=True)
            wb.put(key, value)
            records.append(Record(self.changelog, key, value, partition=m.partition))
        for p, wb in writes.items():
            self.db(p).write(wb)
        return records

    def persisted(self, offsets: dict[tuple[str, int], int]) -> None:
        for (topic, p), off in offsets.items():
            if topic == self.changelog:
                self.db(p)[self.OFFSET_KEY] = str(off).encode()


def state_value(key: bytes, old: bytes | None, offset: int, n: int) -> bytes:
    """key|last event offset|events so far, padded: checkable after a recovery."""
    count = int(old.split(b"|")[2]) if old else 0
    return b"%s|%d|%d|" % (key, offset, count + n)


def pad(value: bytes) -> bytes:
    return value.ljust(STATE_BYTES, b"s")


def per_user(msgs: list[Any]) -> dict[bytes, tuple[Any, int]]:
    """Each user's last message of the batch and how many it has there."""
    out: dict[bytes, tuple[Any, int]] = {}
    for m in msgs:
        prev = out.get(m.key)
        out[m.key] = (m, prev[1] + 1 if prev else 1)
    return out


# -- faust ---------------------------------------------------------------------------------
def run_faust(spec: dict[str, Any]) -> None:
    import faust

    settings = {
        "broker": f"kafka://{spec['broker']}",
        "store": "rocksdb://",
        "datadir": spec["data_dir"],
        "autodiscover": False,
        "topic_partitions": spec["partitions"],
        "web_enabled": False,
        "producer_max_request_size": MAX_BYTES,
        "consumer_max_fetch_size": MAX_BYTES,
        "consumer_auto_offset_reset": "earliest",
        "producer_linger": 0.002,
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        **spec.get("faust", {}),
    }
    app = faust.App(spec["group"], **settings)
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    events = app.topic(spec["in_topic"], partitions=spec["partitions"], schema=faust.Schema(**raw))  # type: ignore[arg-type]
    out = app.topic(spec["out_topic"], schema=faust.Schema(**raw))  # type: ignore[arg-type]
    table = app.Table("state", partitions=spec["partitions"], key_type=bytes, value_type=bytes)
    meter, payload = Meter(spec), make_payload(spec)
    mode, send, tmode = (
        spec.get("mode", "take_events"),
        spec.get("send", "none"),
        spec.get("table", "none"),
    )

    async def finish() -> None:
        await asyncio.sleep(0.3)  # the take's events are acked once the agent body returns
        await app.consumer.commit()
        meter.write()
        try:  # leave the group, so that a recovery check can join it at once
            await asyncio.wait_for(app.consumer.stop(), 15)
        finally:
            os._exit(0)

    if spec.get("recover"):
        ready: list[bool] = []

        @app.timer(0.5)
        async def dump() -> None:
            """Once faust has recovered the table from its changelog: every user's state."""
            done = app.tables.recovery.completed.is_set() and app.consumer.assignment()  # type: ignore[attr-defined]
            ready.append(bool(done and not app.rebalancing and not app.in_recovery))
            if ready[-3:] == [True] * 3:
                state = {k.decode(): v.decode().split("|")[1:3] for k, v in table.data.items()}
                Path(spec["result"]).write_text(json.dumps({"state": state}))
                os._exit(0)

    async def handle(batch: list[Any]) -> None:
        meter.got(0)
        records: list[Record] = []
        if tmode != "none":
            records = faust_table(table, batch, tmode)
        if send == "send":
            futs = [
                await out.send(key=e.message.key, value=payload(e.message.key, i))
                for i, e in enumerate(batch)
            ]
            await asyncio.gather(*futs)
        elif send == "batch":
            records += [
                Record(out.get_topic_name(), e.message.key, payload(e.message.key, i))
                for i, e in enumerate(batch)
            ]
        if records:
            pub = publisher(app.producer._producer)  # type: ignore[attr-defined]
            await pub.publish(records)
            StateIO(table).persisted(records)
        if meter.got(len(batch)):
            asyncio.ensure_future(finish())

    @app.agent(events, concurrency=1)
    async def agent(stream: Any) -> None:
        try:
            await consume(stream)
        except BaseException:  # noqa: BLE001 - a crashed agent would leave the worker idling until the timeout
            traceback.print_exc()
            os._exit(3)

    async def consume(stream: Any) -> None:
        if not spec.get("sensors", True):
            app.sensors.remove(app.monitor)  # added when the app starts
        if mode == "take_events":
            async for batch in stream.take_events(TAKE, within=WITHIN_S):
                await handle(list(batch))
        elif mode == "take":
            async for values in stream.take(TAKE, within=WITHIN_S):
                meter.got(0)
                if meter.got(len(values)):
                    asyncio.ensure_future(finish())
        else:  # events(), acked by us every TAKE events
            stream = stream.noack() if mode == "noack" else stream
            held: list[Any] = []
            async for event in stream.events():
                held.append(event)
                if len(held) >= TAKE or meter.n + len(held) >= meter.target:
                    if mode == "noack":
                        for e in held:
                            await stream.ack(e)
                    meter.got(0)
                    if meter.got(len(held)):
                        asyncio.ensure_future(finish())
                    held = []

    worker = faust.Worker(app, loglevel="warn", quiet=True)
    worker.execute_from_commandline()


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` faust's current event in this task (table partition = its partition), as
    the worker did before ``StateIO`` (faust-streaming #497)."""
    from faust.streams import _current_event

    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def faust_table(table: Any, batch: list[Any], tmode: str) -> list[Record]:
    """Read and write each user's state once per take, in the context of the user's last event
    (its partition is the table's partition). ``direct`` writes the faust store without faust's
    per-write changelog (send_soon + callback + a RocksDB put of the offset) and returns the
    changelog records; ``rawdb`` goes one step further: ``StateIO`` on the partition's
    rocksdict DB itself, one WriteBatch per partition (no faust codecs, no current event)."""
    last = per_user([e.message for e in batch])
    if tmode == "rawdb":
        io = StateIO(table)
        return io.write(
            (key, pad(state_value(key, io.read(key, m.partition), m.offset, n)), m.partition)
            for key, (m, n) in last.items()
        )
    events = {id(e.message): e for e in batch}
    topic = table.changelog_topic.get_topic_name()
    records = []
    for key, (m, n) in last.items():
        with event_context(events[id(m)]):
            if tmode == "faust":
                table[key] = pad(state_value(key, table.get(key), m.offset, n))
            else:
                value = pad(state_value(key, table.data.get(key), m.offset, n))
                table.data[key] = value
                records.append(Record(topic, key, value, partition=m.partition))
    return records


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["kind"] == "faust":
        run_faust(spec)
    else:
        asyncio.run(run_aiokafka(spec))


if __name__ == "__main__":
    main()
