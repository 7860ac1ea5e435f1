"""Faults benchmark through the REAL broker: fuzzed input, kill -9 failover between two
workers, and restoring a large user table from its changelog; one table, targets marked.

    .venv/bin/python bench/faults.py                      # world + model cached in var/bench
    .venv/bin/python bench/faults.py --only fuzz --bad 2000
    .venv/bin/python bench/faults.py --broker HOST:PORT

Scenarios (``bench/fault_scenarios.py``; issue 14 targets):

- fuzz: ``--good`` good events at ``--fuzz-rate`` (the clean run), then as many new good
  events at the same rate with ``--bad`` generated bad messages between them (14 kinds:
  random bytes, deep nesting, huge strings, NaN/Infinity, wrong types, timestamps out of
  range, unicode edge cases, oversize, ...; 5 % of the good ones have odd but valid user ids).
  Every bad one must reach the DLQ with a reason, every good one a recommendation, the worker
  must live, and the good events' worker latency p99 stay <= 2x the clean run's;
- failover: two workers (``serving.standby_replicas`` = 1) at ``--rate`` events/s for
  ``--seconds``; one killed with SIGKILL at ``--kill-at``. Failover = kill -> the first list
  for an event sent after the kill on each of its partitions (the slowest partition); p99 =
  end to end over the events sent during the failover; nothing lost; the survivor's states
  count every event once; duplicates (redeliveries) and how many carried the redelivery
  header; then 200 events sent again, each of whose lists must carry it. Targets: <= 15 s, 0 lost;
- restore: ``--restore-users`` users in the state table's changelog (the real states a worker
  wrote for 400 users, copied under new ids), the worker's data dir deleted, a new worker
  started: start -> ready (table restored) <= 60 s; 300 sampled states byte-identical.

The broker, the workers and this driver share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fault_scenarios import Outcome, Stage, failover, fuzz, restore  # noqa: E402
from bench.harness import console, prepare_registry, prepare_world, start_broker  # noqa: E402
from schemas.settings import Settings  # noqa: E402


async def run(args: argparse.Namespace, stage: Stage) -> list[Outcome]:
    out = []
    if "fuzz" in args.only:
        out.append(await fuzz(stage, args.bad, args.good, args.fuzz_rate, args.max_bytes))
        console.print(f"  {out[-1].scenario}: {'met' if out[-1].met else 'NOT met'}")
    if "failover" in args.only:
        out.append(await failover(stage, args.rate, args.seconds, args.kill_at))
        console.print(f"  {out[-1].scenario}: {out[-1].seconds:.1f} s")
    if "restore" in args.only:
        out.append(await restore(stage, args.restore_users))
        console.print(f"  {out[-1].scenario}: {out[-1].seconds:.1f} s")
    return out


def table(rows: list[Outcome]) -> Table:
    t = Table(title=f"faults benchmark ({os.cpu_count()} CPUs; broker, workers, driver share them)")
    cols = ["scenario", "events in", "recommended", "in DLQ", "lost", "duplicates (marked)"]
    for c in (*cols, "failover / restore s", "p99 ms", "targets"):
        t.add_column(c, justify="left" if c in ("scenario", "targets") else "right")

    def n(v: int | None) -> str:
        return "-" if v is None else f"{v:,}"

    for r in rows:
        t.add_row(
            r.scenario,
            n(r.events_in),
            n(r.recommended),
            n(r.in_dlq),
            n(r.lost),
            f"{r.duplicates:,} ({r.marked:,})" if r.duplicates or r.marked else "0",
            "-" if r.seconds is None else f"{r.seconds:.1f}",
            "-" if r.p99_ms is None else f"{r.p99_ms:,.0f}",
            "\n".join(c.describe() for c in r.checks),
        )
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", help="HOST:PORT of a running broker (default: start one)")
    ap.add_argument("--workdir", default="var/bench")
    ap.add_argument("--only", default="fuzz,failover,restore")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--bad", type=int, default=10_000, help="fuzz: bad messages")
    ap.add_argument("--good", type=int, default=2000, help="fuzz: good events per phase")
    ap.add_argument("--fuzz-rate", type=float, default=200.0, help="fuzz: good events/s")
    ap.add_argument("--max-bytes", type=int, default=256 * 1024, help="STREAMREC_MAX_MESSAGE_BYTES")
    ap.add_argument("--rate", type=float, default=500.0, help="failover: events/s")
    ap.add_argument("--seconds", type=float, default=40.0, help="failover: seconds of traffic")
    ap.add_argument("--kill-at", type=float, default=10.0, help="failover: kill after N s")
    ap.add_argument("--restore-users", type=int, default=200_000)
    ap.add_argument("--ort-threads", type=int, default=1)
    ap.add_argument("--json", dest="json_path", default=None, help="[default: WORKDIR/faults.json]")
    args = ap.parse_args()
    args.only = set(args.only.split(","))
    workdir = Path(args.workdir)
    world = prepare_world(workdir, 5000, 10_000, 100_000)
    registry = prepare_registry(workdir, world)
    broker, kafka_dir = (args.broker, None) if args.broker else start_broker(workdir, 8)
    base = Settings().with_overrides(
        **{"kafka.broker": broker, "topics.partitions": args.partitions, "serving.device": "cpu"}
    )
    stage = Stage(base, world, registry, workdir / "faults", args.ort_threads)
    try:
        rows = asyncio.run(run(args, stage))
    finally:
        if kafka_dir is not None:
            from stream_app.kafka import local as kafka_local

            kafka_local.stop(kafka_dir)
    console.print(table(rows))
    for r in rows:
        console.print(f"[dim]{r.scenario}: {json.dumps(r.detail, default=str)}")
    path = Path(args.json_path) if args.json_path else workdir / "faults.json"
    path.write_text(json.dumps([asdict(r) for r in rows], indent=2, default=str))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
