"""``make bench``: the worker benchmark (one worker, then two sharing partitions) through a real
broker, the faults benchmark (fuzzed input, kill -9 failover, changelog restore), the offline
replay benchmark on the same world and model, then retrieval over 10,000 to 1,000,000 items
(exact vs the ANN index, recall, memory: the 1M-item scenario); each prints its tables.

    .venv/bin/python bench/run.py [--broker HOST:PORT] [--quick]

The world (10,000 items, 5,000 users) and the small model are generated / trained once and
cached in var/bench; a local broker is started (and stopped) when none is given. JSON results:
var/bench/worker.json, var/bench/worker-2w.json, var/bench/faults.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker_bench import prepare_registry, prepare_world, start_broker  # noqa: E402
from stream_app.core.vectors import VECTORS_FILE  # noqa: E402
from stream_app.registry import Registry  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", help="HOST:PORT of a running broker (default: start one)")
    ap.add_argument("--workdir", default="var/bench")
    ap.add_argument("--quick", action="store_true", help="shorter phases, no profile")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    world = prepare_world(workdir, 5000, 10_000, 100_000)
    registry = prepare_registry(workdir, world)
    # the 1M-item scenario's vector structure: the bench model's catalogue (the same world and
    # encoder on every machine), not whatever this machine's text-vector cache holds
    current = Registry(registry).current()
    if current is None:
        msg = f"{registry}: no CURRENT version after training"
        raise SystemExit(msg)
    vectors = Registry(registry).path(current) / VECTORS_FILE
    broker, kafka_dir = (args.broker, None) if args.broker else start_broker(workdir, 8)
    py = sys.executable
    bench = str(ROOT / "bench" / "worker_bench.py")
    common = ["--broker", broker, "--workdir", str(workdir)]
    # the worker benchmark's own phase lengths (faults.py takes --seconds but no --backlog)
    quick = ["--seconds", "5", "--backlog", "6000"] if args.quick else []
    runs = [
        [py, bench, *common, *quick, *([] if args.quick else ["--profile"])],
        [py, bench, *common, *quick, "--workers", "2"],
        [
            py,
            str(ROOT / "bench" / "faults.py"),
            *common,
            *(
                ["--bad", "2000", "--seconds", "20", "--restore-users", "50000"]
                if args.quick
                else []
            ),
        ],
        [
            py,
            str(ROOT / "bench" / "replay_bench.py"),
            "--world",
            str(world),
            "--registry",
            str(registry),
            *(["--limit", "20000"] if args.quick else []),
        ],
        [
            py,
            str(ROOT / "bench" / "retrieval_bench.py"),
            "--vectors",
            str(vectors),
            *(
                ["--sizes", "10000,1000000", "--batches", "10", "--no-gaussian", "--no-methods"]
                if args.quick
                else []
            ),
        ],
    ]
    # numpy's BLAS limited to one thread in every run, as ``streamrec worker`` does
    # (serving.blas_threads): the engine's small per-batch products are slower multi-threaded
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    failed = 0
    try:
        for cmd in runs:
            print(f"\n$ {' '.join(Path(c).name if c == py else c for c in cmd)}", flush=True)
            failed += subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode != 0
    finally:
        if kafka_dir is not None:
            from stream_app.kafka import local as kafka_local

            kafka_local.stop(kafka_dir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
