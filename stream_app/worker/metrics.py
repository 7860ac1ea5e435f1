"""Prometheus metrics of one worker, in their own registry (several apps in one process, e.g.
tests, never collide), exposed at ``/metrics`` on the worker's web port."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_in = Counter(
            "streamrec_events_in", "Events received from the events topic.", registry=r
        )
        self.recs_out = Counter(
            "streamrec_recommendations_out",
            "Recommendations published (acked by the broker).",
            registry=r,
        )
        self.dlq = Counter(
            "streamrec_dlq",
            "Events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "streamrec_duplicate_events",
            "Redelivered events (id already in the user's state).",
            registry=r,
        )
        self.acks_withheld = Counter(
            "streamrec_acks_withheld",
            "Events faust acked without the agent publishing them (rebalance skips, a cancelled "
            "batch): not committed, read again (stream_app/worker/acks.py).",
            registry=r,
        )
        self.offset_gaps = Counter(
            "streamrec_offset_gaps",
            "Events-topic offsets the agent never got (a faust fetch skip; worker/acks.py).",
            registry=r,
        )
        self.fetch_repairs = Counter(
            "streamrec_fetch_repairs",
            "Fetch skips on the events topic the consumer caught and sought back over, so "
            "the skipped events were handled, not committed past (worker/acks.py FetchRepair).",
            registry=r,
        )
        self.latency = Histogram(
            "streamrec_latency_seconds",
            "Event receipt by the worker -> recommendation sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamrec_batch_size", "Events per processed batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.score_seconds = Histogram(
            "streamrec_score_seconds",
            "Retrieval + ranking + diversification per batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "streamrec_model_info", "1 for the model version being served.", ["version"], registry=r
        )
        self.provider = Gauge(
            "streamrec_onnx_provider",
            "1 for the ONNX Runtime execution provider the served version runs on.",
            ["provider"],
            registry=r,
        )
        self.swaps = Counter("streamrec_model_swaps", "Model versions swapped in.", registry=r)
        self.refusals = Counter(
            "streamrec_model_refusals",
            "Model versions refused (bad files, load failure, non-finite).",
            registry=r,
        )
        self.catalogue_size = Gauge(
            "streamrec_catalogue_items", "Live items in the catalogue.", registry=r
        )
        self.catalogue_updates = Counter(
            "streamrec_catalogue_updates",
            "Item messages applied (upserts and deletes).",
            registry=r,
        )
        self.catalogue_encoded = Counter(
            "streamrec_catalogue_encoded", "Item texts run through the encoder.", registry=r
        )
        self.catalogue_bad = Counter(
            "streamrec_catalogue_bad", "Item messages that failed validation.", registry=r
        )
        self.online_evaluated = Counter(
            "streamrec_online_evaluated",
            "Events judged for the live hit rate (the user had a previous list), by the version "
            "that made that list.",
            ["version"],
            registry=r,
        )
        self.online_hits = Counter(
            "streamrec_online_hits",
            "Events whose item was in the user's previous list, by the version that made it.",
            ["version"],
            registry=r,
        )
        self.auto_rollbacks = Counter(
            "streamrec_auto_rollbacks",
            "Automatic rollbacks after a live hit-rate drop: done (this worker moved CURRENT), "
            "skipped (CURRENT had already moved), failed.",
            ["outcome"],
            registry=r,
        )
        self.shadow_events = Counter(
            "streamrec_shadow_events", "Live events scored by a shadow version.", registry=r
        )
        self.shadow_reports = Counter(
            "streamrec_shadow_reports", "Shadow reports sent, by outcome.", ["outcome"], registry=r
        )
        self.shadow_active = Gauge(
            "streamrec_shadow_info",
            "1 for the version being shadow-scored.",
            ["version"],
            registry=r,
        )

    def model_loaded(self, version: str, previous: str | None, provider: str = "") -> None:
        if previous is not None:
            self.model_info.remove(previous)
            self.swaps.inc()
        self.model_info.labels(version).set(1)
        if provider:
            self.provider.clear()
            self.provider.labels(provider).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def parse_counters(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of a /metrics page -> {name{labels}: value} (tests, demo)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out
