#!/usr/bin/env bash
# Run every test tier against a REAL Kafka broker that this script starts (and stops).
# A broker that cannot start fails the run; nothing is skipped for lack of one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=.venv/bin/python
port=${STREAMREC_TEST_PORT:-19092}
data=$(mktemp -d /tmp/streamrec-test-kafka.XXXXXX)
cleanup() { .venv/bin/streamrec kafka stop --port "$port" --data-dir "$data" || true; rm -rf "$data"; }
trap cleanup EXIT
.venv/bin/streamrec kafka start --port "$port" --data-dir "$data" --partitions 4
export STREAMREC_TEST_BROKER="localhost:$port"
"$py" -m pytest tests -q -rs --durations=15 "$@"
