"""Shadow promotion, job side (``streamrec finetune --shadow N``).

A candidate that passed the offline gate is published with status ``shadow`` (never current);
a ``shadow`` notice asks every worker to score it beside the served version on its next N
live events; each worker answers with a ``shadow-report`` (paired online hit rates, see
``stream_app.worker.shadow``). The job collects reports until ``min_reports`` have arrived
(plus a short grace for the others) or ``wait_s`` has passed, sums them, and:

- promotes (``Registry.promote(expected_current=parent)`` + a ``promote`` notice) when the
  shadow's hit rate >= the served one's - ``tolerance`` (absolute);
- else refuses: the version stays in the registry with status ``refused`` and the shadow
  numbers in its manifest (for inspection), never served.

No report at all (no worker running, or none reached N events in time), or a worker that
could not load the version, refuses too: promotion waits for a verdict, it never defaults.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from schemas.manifest import ShadowRecord
from schemas.recommendations import ModelUpdate
from schemas.settings import Settings
from stream_app.kafka.io import ensure_topics, send_notice, start_client, topic_partitions
from stream_app.registry import CurrentChanged, Registry

log = logging.getLogger("streamrec.finetune")
GRACE_S = 2.0


@dataclass
class ShadowVerdict:
    promote: bool
    reason: str
    current_hit_rate: float = float("nan")
    shadow_hit_rate: float = float("nan")
    evaluated: int = 0
    events: int = 0
    workers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def aggregate(reports: list[ModelUpdate], tolerance: float) -> ShadowVerdict:
    """Sum the workers' paired counts; the verdict on the summed hit rates."""
    errors = [f"{r.worker}: {r.reason}" for r in reports if r.reason]
    good = [r for r in reports if not r.reason]
    workers = [r.worker or "?" for r in reports]
    evaluated = int(sum(r.metrics.get("evaluated", 0) for r in good))
    events = int(sum(r.metrics.get("events", 0) for r in good))
    if errors:
        return ShadowVerdict(
            False,
            "shadow: " + "; ".join(errors),
            evaluated=evaluated,
            events=events,
            workers=workers,
            errors=errors,
        )
    if evaluated == 0:
        why = "no worker reported" if not reports else "no paired outcome in the reports"
        return ShadowVerdict(False, f"shadow: {why}", events=events, workers=workers)
    cur = sum(r.metrics.get("current_hits", 0) for r in good) / evaluated
    sha = sum(r.metrics.get("shadow_hits", 0) for r in good) / evaluated
    ok = sha >= cur - tolerance
    rel = ">=" if ok else "<"
    reason = (
        f"shadow: online hit rate {sha:.4f} {rel} current {cur:.4f} - {tolerance} "
        f"({evaluated} paired events, {len(good)} worker(s))"
    )
    return ShadowVerdict(ok, reason, cur, sha, evaluated, events, workers)


async def collect_reports(
    settings: Settings,
    version: str,
    parent: str | None,
    events: int,
    wait_s: float,
    min_reports: int = 1,
) -> list[ModelUpdate]:
    """Send the ``shadow`` notice and gather the workers' ``shadow-report`` notices for
    ``version`` (reading from the topic's end as it was just before the notice)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = settings.topics.model_updates
    await ensure_topics(settings)
    tps = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_kwargs(), group_id=None, enable_auto_commit=False
    )
    await start_client(consumer, settings)
    reports: dict[str, ModelUpdate] = {}
    try:
        consumer.assign(tps)
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)
        notice = ModelUpdate(
            model_version=version,
            parent_version=parent,
            action="shadow",
            events=events,
            published_at=datetime.now(UTC),
        )
        await send_notice(settings, notice)
        log.info(
            "shadow %s: asked workers to score %d events; waiting up to %.0f s",
            version,
            events,
            wait_s,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for msgs in batch.values():
                for m in msgs:
                    try:
                        note = ModelUpdate.model_validate_json(m.value or b"")
                    except ValidationError:
                        continue
                    if note.action == "shadow-report" and note.model_version == version:
                        reports[note.worker or f"offset-{m.offset}"] = note
            if len(reports) >= min_reports:
                deadline = min(deadline, time.monotonic() + GRACE_S)
    finally:
        await consumer.stop()
    return list(reports.values())


async def notify(
    settings: Settings,
    version: str,
    parent: str | None,
    action: Literal["publish", "promote", "rollback"],
    metrics: dict[str, float],
) -> None:
    notice = ModelUpdate(
        model_version=version,
        parent_version=parent,
        action=action,
        published_at=datetime.now(UTC),
        metrics=metrics,
    )
    await send_notice(settings, notice)


async def shadow_promote(
    settings: Settings,
    registry: Registry,
    version: str,
    parent: str | None,
    events: int,
    wait_s: float,
    tolerance: float,
    min_reports: int = 1,
) -> ShadowVerdict:
    """The whole shadow step for a published (not current) candidate: status ``shadow``,
    workers' reports, then promote or refuse. The verdict says which and why."""
    registry.set_status(version, "shadow")
    reports = await collect_reports(settings, version, parent, events, wait_s, min_reports)
    verdict = aggregate(reports, tolerance)
    record = ShadowRecord(**{k: v for k, v in asdict(verdict).items() if k != "promote"})
    if not verdict.promote:
        registry.set_status(version, "refused", refused_reason=verdict.reason, shadow=record)
        return verdict
    registry.set_status(version, "published", shadow=record)
    try:
        registry.promote(version, expected_current=parent)
    except CurrentChanged as exc:
        verdict.promote = False
        verdict.reason += f"; not promoted: {exc}"
        return verdict
    try:
        await notify(
            settings,
            version,
            parent,
            "promote",
            {
                "online_hit_rate": verdict.shadow_hit_rate,
                "current_online_hit_rate": verdict.current_hit_rate,
            },
        )
    except Exception as exc:  # noqa: BLE001 - workers poll CURRENT too
        verdict.reason += f" (promote notice not sent: {exc}; workers polling CURRENT switch)"
    return verdict
