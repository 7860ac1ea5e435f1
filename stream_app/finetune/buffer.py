"""Durable, bounded training buffer for the fine-tuning job (RocksDB via rocksdict).

Holds every event of the recent ``window`` (by event time) plus a fixed-size reservoir sample
of older events (against forgetting). Each ``add`` is one atomic WriteBatch (the WAL makes it
durable), so a killed job restarts with the buffer exactly as it was after its last batch;
the Kafka offsets are committed only after the batch is written (at-least-once), and a
re-delivered event lands on the same key (time + event id), so it is stored once.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from schemas.events import decode_event

RECENT, SAMPLE, META = b"r:", b"s:", b"meta"


@dataclass
class BufferStats:
    recent: int
    sampled: int
    seen_old: int
    max_ts_ms: int
    added_since_round: int


def _recent_key(ts_ms: int, event_id: str) -> bytes:
    return RECENT + struct.pack(">q", ts_ms) + event_id.encode()


class EventBuffer:
    def __init__(self, path: Path, window_s: float, reservoir: int = 20_000, seed: int = 0) -> None:
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self.db = Rdict(str(path), options=opts)
        self.window_ms = int(window_s * 1000)
        self.reservoir = reservoir
        self.rng = np.random.default_rng(seed)
        self.meta: dict[str, Any] = json.loads(self.db.get(META) or b"{}")
        self.meta.setdefault("seen_old", 0)
        self.meta.setdefault("max_ts_ms", 0)
        self.meta.setdefault("added_since_round", 0)
        self.meta.setdefault("added_total", self.meta["added_since_round"])
        self.meta.setdefault("rounds", [])
        self._sync = WriteOptions()
        self._sync.sync = True

    def close(self) -> None:
        self.db.close()

    def add(self, raw_events: Iterable[bytes]) -> int:
        """Store valid events (invalid ones are skipped: the worker's DLQ reports them)."""
        batch = WriteBatch(raw_mode=True)
        n = 0
        for raw in raw_events:
            try:
                ev = decode_event(raw)
            except ValueError:
                continue
            ts_ms = int(ev.ts.timestamp() * 1000)
            batch.put(_recent_key(ts_ms, ev.event_id), raw)
            self.meta["max_ts_ms"] = max(self.meta["max_ts_ms"], ts_ms)
            n += 1
        if n == 0:
            return 0
        self.meta["added_since_round"] += n
        self.meta["added_total"] += n
        self._evict(batch)
        batch.put(META, json.dumps(self.meta).encode())
        self.db.write(batch, self._sync)
        return n

    def _evict(self, batch: WriteBatch) -> None:
        """Events older than the window leave it; each may enter the reservoir (algorithm R)."""
        cutoff = _recent_key(self.meta["max_ts_ms"] - self.window_ms, "")
        for key, raw in self._scan(RECENT):
            if key >= cutoff:
                break
            batch.delete(key)
            seen = self.meta["seen_old"]
            if seen < self.reservoir:
                batch.put(SAMPLE + struct.pack(">q", seen), raw)
            else:
                j = int(self.rng.integers(0, seen + 1))
                if j < self.reservoir:
                    batch.put(SAMPLE + struct.pack(">q", j), raw)
            self.meta["seen_old"] = seen + 1

    def events(self) -> list[Any]:
        """Sampled older events then the window, validated, in time order (stable)."""
        out: list[Any] = []
        for prefix in (SAMPLE, RECENT):
            out.extend(decode_event(raw) for _, raw in self._scan(prefix))
        out.sort(key=lambda e: e.ts)
        return out

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every key under ``prefix``, in key order (raw mode: bytes)."""
        for key, value in self.db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, cast(bytes, value)

    def stats(self) -> BufferStats:
        recent = sum(1 for _ in self._scan(RECENT))
        sampled = min(self.meta["seen_old"], self.reservoir)
        return BufferStats(
            recent,
            sampled,
            self.meta["seen_old"],
            self.meta["max_ts_ms"],
            self.meta["added_since_round"],
        )

    def watermark(self) -> str:
        """Identifies the buffer's content: rounds on the same data are not repeated (only
        counters that never go back: a finished round resets ``added_since_round``, and the
        same data must keep the same id after it)."""
        return f"{self.meta['max_ts_ms']}-{self.meta['seen_old']}-{self.meta['added_total']}"

    def mark_round(self, record: dict[str, Any]) -> None:
        self.meta["rounds"] = [*self.meta["rounds"][-49:], record]
        self.meta["added_since_round"] = 0
        self.db.put(META, json.dumps(self.meta).encode(), self._sync)
