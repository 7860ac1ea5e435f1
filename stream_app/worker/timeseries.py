"""Per-second time series of one worker, kept in ring buffers for the dashboard (pure: the
agent feeds it, the read API asks for a window; time is passed in, never read here).

Each second holds: events in, recommendations out, dead letters, a latency histogram (log
buckets, ~12% wide, 0.1 ms .. 100 s) from which p50 / p99 are read, and per model version the
live hit-rate outcomes (evaluated, hits). Seconds older than ``seconds`` are overwritten; a
second with no sample reads as zero counts and no latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

LAT_MIN_S = 1e-4
LAT_MAX_S = 100.0
BUCKETS_PER_DECADE = 20
N_BUCKETS = int(round(math.log10(LAT_MAX_S / LAT_MIN_S) * BUCKETS_PER_DECADE)) + 2
MAX_VERSIONS = 8


def latency_bucket(seconds: float) -> int:
    """Histogram bucket of a latency: 0 = below LAT_MIN_S, N_BUCKETS - 1 = above LAT_MAX_S."""
    if not seconds > LAT_MIN_S:
        return 0
    b = 1 + int(math.log10(seconds / LAT_MIN_S) * BUCKETS_PER_DECADE)
    return min(b, N_BUCKETS - 1)


def bucket_upper_s(bucket: int) -> float:
    """Upper edge of a bucket (the value reported for a percentile falling in it)."""
    if bucket <= 0:
        return LAT_MIN_S
    return LAT_MIN_S * 10 ** (min(bucket, N_BUCKETS - 2) / BUCKETS_PER_DECADE)


def percentile_s(hist: np.ndarray, q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram: the upper edge of the bucket holding it
    (over-estimates by at most one bucket, ~12%); None for an empty histogram."""
    total = int(hist.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    bucket = int(np.searchsorted(np.cumsum(hist), rank))
    return bucket_upper_s(bucket)


@dataclass(frozen=True)
class Window:
    """Columns for the seconds ``t`` (oldest first); see ``SeriesCollector.window``."""

    t: list[float]
    events: list[int]
    recs: list[int]
    dlq: list[int]
    p50_ms: list[float | None]
    p99_ms: list[float | None]
    hit_rate: dict[str, list[float | None]]
    hit_window_s: int


class SeriesCollector:
    def __init__(self, seconds: int = 600, hit_window_s: int = 30) -> None:
        if seconds < 1 or hit_window_s < 1:
            msg = f"seconds and hit_window_s: expected >= 1, got {seconds}, {hit_window_s}"
            raise ValueError(msg)
        self.seconds, self.hit_window_s = seconds, hit_window_s
        self.sec = np.full(seconds, -1, np.int64)  # which epoch second a slot holds
        self.events = np.zeros(seconds, np.int64)
        self.recs = np.zeros(seconds, np.int64)
        self.dlq = np.zeros(seconds, np.int64)
        self.lat = np.zeros((seconds, N_BUCKETS), np.int64)
        self.hits: dict[str, np.ndarray] = {}  # version -> [seconds, 2] (evaluated, hits)

    def _slot(self, now: float) -> int:
        s = int(math.floor(now))
        i = s % self.seconds
        if self.sec[i] != s:
            self.sec[i] = s
            self.events[i] = self.recs[i] = self.dlq[i] = 0
            self.lat[i] = 0
            for arr in self.hits.values():
                arr[i] = 0
        return i

    def record(
        self,
        now: float,
        events: int = 0,
        latencies_s: Iterable[float] = (),
        dlq: int = 0,
    ) -> None:
        """One batch at time ``now``: events received, the latency of each recommendation
        sent (its count is the recommendations out), dead letters sent."""
        i = self._slot(now)
        self.events[i] += events
        self.dlq[i] += dlq
        for x in latencies_s:
            self.lat[i, latency_bucket(x)] += 1
            self.recs[i] += 1

    def record_outcomes(self, now: float, by_version: dict[str, tuple[int, int]]) -> None:
        """Live hit-rate outcomes at ``now``: version -> (evaluated, hits)."""
        i = self._slot(now)
        for version, (n, hits) in by_version.items():
            arr = self.hits.get(version)
            if arr is None:
                if len(self.hits) >= MAX_VERSIONS:
                    oldest = min(self.hits, key=lambda v: self._last_second(self.hits[v]))
                    del self.hits[oldest]
                arr = self.hits[version] = np.zeros((self.seconds, 2), np.int64)
            arr[i] += (n, hits)

    def _last_second(self, arr: np.ndarray) -> int:
        used = (arr[:, 0] > 0) & (self.sec >= 0)
        return int(self.sec[used].max()) if used.any() else -1

    def window(self, now: float, seconds: int | None = None) -> Window:
        """The last ``seconds`` whole seconds before ``now`` (default: all kept), oldest first;
        the current, unfinished second is left out."""
        n = min(seconds or self.seconds, self.seconds)
        end = int(math.floor(now))
        wanted = np.arange(end - n, end)
        idx = wanted % self.seconds
        valid = self.sec[idx] == wanted

        def col(arr: np.ndarray) -> list[int]:
            return np.where(valid, arr[idx], 0).astype(int).tolist()

        p50: list[float | None] = []
        p99: list[float | None] = []
        for j, ok in zip(idx.tolist(), valid.tolist(), strict=True):
            hist = self.lat[j] if ok else np.zeros(N_BUCKETS, np.int64)
            a, b = percentile_s(hist, 0.5), percentile_s(hist, 0.99)
            p50.append(None if a is None else round(a * 1000, 3))
            p99.append(None if b is None else round(b * 1000, 3))
        rates = {v: self._rolling_rate(arr, idx, valid) for v, arr in self.hits.items()}
        return Window(
            t=wanted.astype(float).tolist(),
            events=col(self.events),
            recs=col(self.recs),
            dlq=col(self.dlq),
            p50_ms=p50,
            p99_ms=p99,
            hit_rate=rates,
            hit_window_s=self.hit_window_s,
        )

    def _rolling_rate(
        self, arr: np.ndarray, idx: np.ndarray, valid: np.ndarray
    ) -> list[float | None]:
        per_s = np.where(valid[:, None], arr[idx], 0)
        csum = np.vstack([np.zeros((1, 2), np.int64), np.cumsum(per_s, axis=0)])
        out: list[float | None] = []
        w = self.hit_window_s
        for k in range(1, len(idx) + 1):
            n, hits = csum[k] - csum[max(0, k - w)]
            out.append(round(float(hits) / float(n), 4) if n > 0 else None)
        return out
