"""`streamrec demo`, the README's main command, end to end for a bounded time: it starts its
own Kafka broker, generates a shop, trains a model, runs a worker and streams events."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.kafka.local import free_port


def metric(out: str, name: str) -> str:
    m = re.search(rf"{re.escape(name)}\s*│\s*(.+?)\s*│", out)
    assert m, f"no '{name}' in the demo's summary:\n{out[-3000:]}"
    return m.group(1)


@pytest.mark.slow
@pytest.mark.model
def test_demo_runs_everything_and_accounts_for_every_event(tmp_path: Path):
    port = free_port(pair=True)  # the demo starts its broker here (controller: port + 1)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "stream_app.cli", "demo"),
            *("--duration", "15", "--rate", "40", "--users", "150", "--epochs", "1"),
            *("--workdir", str(tmp_path / "demo"), "--broker", f"localhost:{port}"),
            *("--web-port", str(free_port())),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    sent = int(metric(out, "events sent"))
    assert sent > 100
    # one per good event; the demo waits a fixed 3 s for the last ones, so on a loaded box a
    # few may still be in flight (exact accounting is the integration tests' job)
    assert sent - 10 <= int(metric(out, "recommendations received")) <= sent
    assert metric(out, "dead letters") == "3 (of 3 bad events sent)"
    assert metric(out, "model version") == "v0001"
    # it stopped the broker it started
    with socket.socket() as s:
        assert s.connect_ex(("localhost", port)) != 0
