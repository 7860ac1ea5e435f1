"""faust's Prometheus sensor, with its per-message work cut down.

faust's ``PrometheusMonitor`` looks up a labelled child (``metric.labels(...)``: a lock, a
label check, a dict lookup) for every message in, every stream event, every fetched end
offset and every table read and write, and builds the stream's label (``shortlabel`` plus a
regex) for every event: about 50-80 µs per event of the worker's fetch path under cProfile
(``bench/worker_bench.py --profile``). ``LeanPrometheusMonitor`` records the same metrics with
the same names, labels and values, with each child and each stream label looked up once.
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import PrometheusMonitor


class LeanPrometheusMonitor(PrometheusMonitor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._labelled: dict[tuple[int, tuple[Any, ...]], Any] = {}
        self._stream_labels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def _child(self, metric: Any, **labels: Any) -> Any:
        key = (id(metric), tuple(labels.values()))
        child = self._labelled.get(key)
        if child is None:
            child = self._labelled[key] = metric.labels(**labels)
        return child

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        Monitor.on_message_in(self, tp, offset, message)  # counters and message.time_in
        m = self._metrics
        m.messages_received.inc()
        m.active_messages.inc()
        self._child(m.messages_received_per_topics, topic=tp.topic).inc()
        self._child(
            m.messages_received_per_topics_partition, topic=tp.topic, partition=tp.partition
        ).set(offset)

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        m = self._metrics
        m.total_events.inc()
        m.total_active_events.inc()
        label = self._stream_labels.get(stream)
        if label is None:
            label = self._stream_labels[stream] = f"stream.{self._stream_label(stream)}.events"
        self._child(m.total_events_per_stream, stream=label).inc()
        return state

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        Monitor.track_tp_end_offset(self, tp, offset)
        self._child(
            self._metrics.topic_partition_end_offset, topic=tp.topic, partition=tp.partition
        ).set(offset)

    def on_table_get(self, table: Any, key: Any) -> None:
        Monitor.on_table_get(self, table, key)
        self._table_op(table, self.KEYS_RETRIEVED)

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        Monitor.on_table_set(self, table, key, value)
        self._table_op(table, self.KEYS_UPDATED)

    def _table_op(self, table: Any, operation: str) -> None:
        metric = self._metrics.table_operations
        self._child(metric, table=f"table.{table.name}", operation=operation).inc()
