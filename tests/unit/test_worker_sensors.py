"""``LeanPrometheusMonitor`` exports exactly what faust's ``PrometheusMonitor`` does (same
metric names, labels and values) for the per-message calls it speeds up."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from prometheus_client import CollectorRegistry, generate_latest

from stream_app.worker.sensors import LeanPrometheusMonitor


class _Owner:
    def __str__(self) -> str:
        return "agent-events"


class _Stream:
    shortlabel = "Stream: Topic: events"
    task_owner = _Owner()

    def __str__(self) -> str:
        return "stream-events"


def _drive(monitor: Any) -> None:
    stream, table = _Stream(), SimpleNamespace(name="users")
    for n in range(12):
        tp = TP("events" if n % 3 else "items", n % 2)
        msg = ConsumerMessage(tp.topic, tp.partition, n, 0.0, 0, [], b"k", b"v", None, 1, 1, tp=tp)
        monitor.on_message_in(tp, n, msg)
        assert msg.time_in is not None  # the worker's latency starts here
        state = monitor.on_stream_event_in(tp, n, stream, SimpleNamespace(message=msg))
        monitor.on_stream_event_out(tp, n, stream, None, state)
        monitor.on_message_out(tp, n, msg)
        monitor.track_tp_end_offset(tp, 100 + n)
        monitor.on_table_get(table, b"k")
        if n % 2:
            monitor.on_table_set(table, b"k", b"v")


def _exported(cls: type) -> list[str]:
    registry = CollectorRegistry()
    _drive(cls(metrics=FaustMetrics.create(registry, "faust")))
    lines = generate_latest(registry).decode().splitlines()
    # timings (histogram sums and buckets) differ run to run: compare the counts
    timed = ("latency", "runtime_ms")
    return sorted(
        line
        for line in lines
        if not line.startswith("#")
        and "_created" not in line
        and not (any(t in line for t in timed) and "_count" not in line)
    )


def test_lean_monitor_exports_what_faust_monitor_exports():
    faust_lines, lean_lines = _exported(PrometheusMonitor), _exported(LeanPrometheusMonitor)
    assert lean_lines == faust_lines
    text = "\n".join(lean_lines)
    assert 'faust_messages_received_per_topic_total{topic="events"} 8.0' in text
    assert 'operation="keys_updated",table="table.users"} 6.0' in text
    assert 'faust_topic_partition_end_offset{partition="1",topic="events"} 111.0' in text


async def test_the_lean_monitor_starts_and_stops_as_a_service_after_use(caplog):
    # the label cache once shadowed mode's Service._children: stopping the worker then logged
    # "'tuple' object has no attribute 'stop'" for every cached child
    monitor = LeanPrometheusMonitor(metrics=FaustMetrics.create(CollectorRegistry(), "faust"))
    await monitor.start()
    _drive(monitor)
    await monitor.stop()
    assert all(callable(getattr(c, "stop", None)) for c in monitor._children)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
