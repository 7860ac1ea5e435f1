"""The read API's documents (``schemas.api``) built from a running worker: its Prometheus
registry (the counters are the very numbers ``/metrics`` shows), its per-second series, the
registry's manifests and its own model log."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from schemas.api import Counters, HitRate, ModelsView, Overview, Series, VersionInfo
from schemas.manifest import Manifest

if TYPE_CHECKING:
    from stream_app.worker.runtime import WorkerRuntime

Labels = tuple[tuple[str, str], ...]


def samples(registry: CollectorRegistry) -> dict[tuple[str, Labels], float]:
    """(sample name, sorted labels) -> value, as ``/metrics`` renders them."""
    out: dict[tuple[str, Labels], float] = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _by_label(values: dict[tuple[str, Labels], float], name: str, label: str) -> dict[str, int]:
    return {
        dict(labels)[label]: int(v)
        for (n, labels), v in values.items()
        if n == name and label in dict(labels)
    }


def counters(registry: CollectorRegistry) -> tuple[Counters, list[HitRate]]:
    v = samples(registry)

    def one(name: str) -> int:
        return int(v.get((name, ()), 0.0))

    evaluated = _by_label(v, "streamrec_online_evaluated_total", "version")
    hits = _by_label(v, "streamrec_online_hits_total", "version")
    rates = [
        HitRate(
            version=ver,
            evaluated=n,
            hits=hits.get(ver, 0),
            rate=round(hits.get(ver, 0) / n, 4) if n else None,
        )
        for ver, n in sorted(evaluated.items())
    ]
    c = Counters(
        events_in=one("streamrec_events_in_total"),
        recommendations_out=one("streamrec_recommendations_out_total"),
        duplicates=one("streamrec_duplicate_events_total"),
        dlq=_by_label(v, "streamrec_dlq_total", "reason"),
        model_swaps=one("streamrec_model_swaps_total"),
        model_refusals=one("streamrec_model_refusals_total"),
        catalogue_items=one("streamrec_catalogue_items"),
    )
    return c, rates


def overview(rt: WorkerRuntime, now: float | None = None) -> Overview:
    now = time.time() if now is None else now
    health = rt.health()
    c, rates = counters(rt.metrics.registry)
    uptime = max(1, math.ceil(now - rt.started_at.timestamp()))
    w = rt.series.window(now, min(uptime, rt.series.seconds))
    return Overview(
        worker=rt.worker_id,
        generated_at=datetime.fromtimestamp(now, tz=UTC),
        started_at=rt.started_at,
        status=health["status"],
        model_version=rt.holder.version,
        counters=c,
        hit_rate=rates,
        series=Series(
            t=w.t,
            events_per_s=w.events,
            recommendations_per_s=w.recs,
            dlq_per_s=w.dlq,
            latency_p50_ms=w.p50_ms,
            latency_p99_ms=w.p99_ms,
            hit_rate=w.hit_rate,
            hit_window_s=w.hit_window_s,
        ),
    )


def version_info(m: Manifest, current: str | None) -> VersionInfo:
    verdict = m.refused_reason or (m.shadow.reason if m.shadow is not None else None)
    return VersionInfo(
        version=m.version,
        parent=m.parent,
        created_at=m.created_at,
        status=m.status,
        verdict=verdict,
        metrics={k: v for k, v in m.metrics.items() if math.isfinite(v)},
        current=m.version == current,
    )


def models_view(rt: WorkerRuntime, manifests: Iterable[Manifest] | None = None) -> ModelsView:
    """Reads the registry's manifests (a few files each call: run it off the event loop)."""
    reg = rt.registry
    current = reg.current()
    found = list(reg.manifests() if manifests is None else manifests)
    found.sort(key=lambda m: int(m.version[1:]), reverse=True)
    return ModelsView(
        current=current,
        serving=rt.holder.version,
        history=reg.history(),
        versions=[version_info(m, current) for m in found],
        swaps=list(rt.model_log.entries),
    )
