"""Kill -9 the fine-tuning job in the middle of a round, then restart it: no half-written
version, no duplicate version, the buffer intact (issue: incremental fine-tuning)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.finetune.buffer import EventBuffer
from stream_app.registry import Registry

CLI = [sys.executable, "-m", "stream_app.cli"]


def finetune_cmd(reg: Path, buf: Path, events: Path, items: Path) -> list[str]:
    return [
        *CLI,
        "finetune",
        "--once",
        "--json",
        "--registry",
        str(reg),
        "--buffer-dir",
        str(buf),
        "--events",
        str(events),
        "--items",
        str(items),
        "--window",
        "100000h",  # every event stays in the recent window: counts are exact
        "--min-events",
        "100",
        "--epochs",
        "6",
        "--tolerance",
        "1.0",  # this test is about crash safety, not the gate
    ]


def buffer_count(path: Path) -> int:
    buf = EventBuffer(path, window_s=100000 * 3600.0)
    try:
        s = buf.stats()
        return s.recent + s.sampled
    finally:
        buf.close()


@pytest.mark.slow
@pytest.mark.model
def test_kill_9_mid_round_then_restart(tiny_world: Path, tiny_registry: Path, tmp_path: Path):
    reg = tmp_path / "registry"
    shutil.copytree(tiny_registry, reg, ignore=shutil.ignore_patterns(".lock", ".staging-*"))
    before = Registry(reg).versions()
    buf, log = tmp_path / "buffer", tmp_path / "first.log"
    events, items = tiny_world / "events.jsonl", tiny_world / "items.jsonl"
    n_events = sum(1 for x in events.read_text().splitlines() if x.strip())

    with open(log, "w") as out:
        proc = subprocess.Popen(
            finetune_cmd(reg, buf, events, items),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        deadline = time.monotonic() + 300
        while "training the " not in log.read_text():  # either engine's training stage
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the round never started training"
            time.sleep(0.2)
        time.sleep(0.5)  # inside the epochs
        assert proc.poll() is None, "the round ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    registry = Registry(reg)
    assert registry.versions() == before  # nothing half-written is visible
    assert registry.current() == before[-1]
    assert buffer_count(buf) == n_events  # every buffered event survived the kill

    # restart on the same buffer (no new events): the round runs once and publishes once
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    second = subprocess.run(
        finetune_cmd(reg, buf, empty, items), capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    rounds = [json.loads(x) for x in second.stdout.splitlines() if x.startswith("{")]
    assert [r["decision"] for r in rounds] == ["published"], rounds
    new = rounds[0]["version"]
    assert registry.versions() == [*before, new] and registry.current() == new
    assert registry.verify(new) == []  # every file matches its manifest's sha256
    assert registry.manifest(new).parent == before[-1]
    assert buffer_count(buf) == n_events

    # and again: the same data is not a new round, so no second version appears
    third = subprocess.run(
        finetune_cmd(reg, buf, empty, items), capture_output=True, text=True, timeout=600
    )
    assert third.returncode == 0, third.stderr[-2000:]
    again = [json.loads(x) for x in third.stdout.splitlines() if x.startswith("{")]
    assert [(r["decision"], r["version"]) for r in again] == [("skipped", new)], again
    assert registry.versions() == [*before, new]
    assert not [p for p in reg.iterdir() if p.name.startswith(".staging")]
