"""The per-second series behind the dashboard: counts per second, latency percentiles from
the log-bucket histogram, the ring's overwrite of old seconds, rolling hit rate by version."""

import numpy as np
import pytest

from stream_app.worker.timeseries import (
    MAX_VERSIONS,
    N_BUCKETS,
    SeriesCollector,
    bucket_upper_s,
    latency_bucket,
    percentile_s,
)


def test_latency_buckets_are_ordered_and_about_twelve_percent_wide():
    xs = [1e-5, 1e-4, 2e-4, 1e-3, 5e-3, 0.02, 0.5, 3.0, 99.0, 1e4]
    buckets = [latency_bucket(x) for x in xs]
    assert buckets == sorted(buckets)
    assert buckets[0] == 0 and buckets[-1] == N_BUCKETS - 1
    for x in (2e-4, 1e-3, 0.0371, 1.5):
        upper = bucket_upper_s(latency_bucket(x))
        assert x <= upper <= x * 10 ** (1 / 20) * 1.0001


def test_percentiles_of_a_known_histogram():
    hist = np.zeros(N_BUCKETS, np.int64)
    for x in [0.001] * 98 + [0.2, 0.2]:
        hist[latency_bucket(x)] += 1
    assert percentile_s(hist, 0.5) == pytest.approx(0.001, rel=0.13)
    assert percentile_s(hist, 0.98) == pytest.approx(0.001, rel=0.13)
    assert percentile_s(hist, 0.99) == pytest.approx(0.2, rel=0.13)
    assert percentile_s(np.zeros(N_BUCKETS, np.int64), 0.5) is None


def test_window_counts_per_second_and_leaves_out_the_current_one():
    s = SeriesCollector(seconds=60)
    s.record(1000.2, events=3, latencies_s=[0.004, 0.006], dlq=1)
    s.record(1000.9, events=2, latencies_s=[0.005])
    s.record(1002.5, events=7, latencies_s=[0.02] * 7)
    s.record(1005.1, events=1, latencies_s=[0.01])  # the current second at now=1005.5
    w = s.window(1005.5, 5)
    assert w.t == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    assert w.events == [5, 0, 7, 0, 0]
    assert w.recs == [3, 0, 7, 0, 0]
    assert w.dlq == [1, 0, 0, 0, 0]
    assert w.p50_ms[1] is None and w.p99_ms[3] is None
    assert w.p50_ms[0] == pytest.approx(5.0, rel=0.13)
    assert w.p99_ms[0] == pytest.approx(6.0, rel=0.13)
    assert w.p99_ms[2] == pytest.approx(20.0, rel=0.13)


def test_old_seconds_are_overwritten_not_added_to():
    s = SeriesCollector(seconds=10)
    s.record(100.0, events=5)
    s.record(110.0, events=1)  # same ring slot, ten seconds later
    assert s.window(111.0, 10).events[-1] == 1
    assert sum(s.window(111.0, 10).events) == 1
    assert s.window(200.0, 10).events == [0] * 10


def test_rolling_hit_rate_by_version_over_the_trailing_window():
    s = SeriesCollector(seconds=100, hit_window_s=3)
    s.record_outcomes(10.5, {"v1": (10, 5)})
    s.record_outcomes(11.5, {"v1": (10, 1), "v2": (4, 4)})
    s.record_outcomes(13.5, {"v1": (10, 0)})
    w = s.window(15.0, 5)  # seconds 10..14
    assert w.hit_rate["v1"] == [0.5, 0.3, 0.3, pytest.approx(1 / 20), 0.0]
    assert w.hit_rate["v2"] == [None, 1.0, 1.0, 1.0, None]


def test_versions_are_capped_dropping_the_one_idle_longest():
    s = SeriesCollector(seconds=100)
    for i in range(MAX_VERSIONS):
        s.record_outcomes(10.0 + i, {f"v{i}": (1, 1)})
    s.record_outcomes(50.0, {"new": (1, 0)})
    assert len(s.hits) == MAX_VERSIONS
    assert "v0" not in s.hits and "new" in s.hits


def test_bad_sizes_are_refused_with_the_values():
    with pytest.raises(ValueError, match="seconds and hit_window_s: expected >= 1, got 0, 30"):
        SeriesCollector(seconds=0)
