"""One batch of raw event messages -> one outcome per message (a recommendation or a dead
letter). Pure and synchronous: the agent supplies the user-state reads and does the I/O.

Rules (at-least-once; every message ends as exactly one recommendation or one dead letter):

- decode + validate with the wire contract; bad input -> dead letter (reason from BadInput);
- an item the catalogue does not know -> dead letter ``unknown_item`` (the agent first waits,
  bounded, for the catalogue feed to catch up with the items topic; see ``agents.py``);
- events of one user inside a batch are applied in order, each recommendation is scored on
  the state right after its own event (``Snapshot``), all scored in one batched call;
- a redelivered event (its id already in the user's state) changes nothing
  (``Recommender.apply`` returns the same state) and is published again: at-least-once
  output, each event id accounted for, no state counts an event twice;
- a stored state from another vector space (encoder change) or another K is rebuilt from its
  recent items (``rebuild_state``) before the event is applied.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from schemas.errors import BadInput
from schemas.events import ClickEvent, PurchaseEvent, decode_event
from stream_app.core.engine import Rec, Recommender, UnknownItem
from stream_app.core.interests import (
    InterestState,
    lite,
    rebuild_state,
    state_from_bytes,
)
from stream_app.worker.dlq import DeadLetter, Where, dead_letter

log = logging.getLogger("streamrec.worker")
Event = ClickEvent | PurchaseEvent


@dataclass
class Incoming:
    key: bytes | None
    value: bytes | None
    where: Where
    received: float  # time.monotonic() at receipt


@dataclass
class Snapshot:
    index: int  # position in the batch
    event: Event
    state: InterestState
    duplicate: bool


@dataclass
class BatchResult:
    dead: dict[int, DeadLetter] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)
    recs: dict[int, list[Rec]] = field(default_factory=dict)
    # user -> (final state, index of the user's last event in the batch): what to write back
    final: dict[str, tuple[InterestState, int]] = field(default_factory=dict)
    duplicates: int = 0
    model_version: str = "unknown"  # of the model that scored this batch


def decode_all(
    batch: list[Incoming], max_bytes: int
) -> tuple[dict[int, Event], dict[int, DeadLetter]]:
    events: dict[int, Event] = {}
    dead: dict[int, DeadLetter] = {}
    for i, msg in enumerate(batch):
        try:
            events[i] = decode_event(msg.value, max_bytes)  # type: ignore[arg-type]
        except BadInput as exc:
            dead[i] = dead_letter(exc, msg.key, msg.value, msg.where)
            log.warning("%s: bad input (%s): %s", msg.where, exc.reason, _short(str(exc)))
    return events, dead


def unknown_items(events: dict[int, Event], rec: Recommender) -> set[str]:
    store = rec.bundle.store
    return {ev.item_id for ev in events.values() if ev.item_id not in store}


def apply_events(
    batch: list[Incoming],
    events: dict[int, Event],
    rec: Recommender,
    load: Callable[[str, int], bytes | None],
    result: BatchResult,
) -> None:
    """Apply decoded events in batch order; fills snapshots, final states and dead letters.

    ``load(user_id, index)`` returns the stored state bytes (read in the context of the
    message at ``index``, so the table reads that message's partition)."""
    current: dict[str, InterestState | None] = {}
    for i in sorted(events):
        ev, msg = events[i], batch[i]
        user = ev.user_id
        try:
            if user not in current:
                current[user] = _load_state(load(user, i), rec)
            state = current[user]
            new = rec.apply(state, lite(ev))
        except UnknownItem as exc:
            result.dead[i] = dead_letter(exc, msg.key, msg.value, msg.where, event_id=ev.event_id)
            log.warning("%s event %s: unknown item %r", msg.where, ev.event_id, ev.item_id)
            continue
        except Exception as exc:  # one bad event never stops the stream
            result.dead[i] = dead_letter(
                exc, msg.key, msg.value, msg.where, "processing", ev.event_id
            )
            log.exception("%s event %s: state update failed", msg.where, ev.event_id)
            continue
        duplicate = new is state
        result.duplicates += duplicate
        if duplicate:
            log.debug(
                "%s event %s: duplicate (already applied), re-publishing", msg.where, ev.event_id
            )
        current[user] = new
        result.final[user] = (new, i)
        result.snapshots.append(Snapshot(i, ev, new, duplicate))


def _load_state(raw: bytes | None, rec: Recommender) -> InterestState | None:
    if raw is None:
        return None
    state = state_from_bytes(raw)
    model = rec.bundle.model
    if state.space != model.space or state.k != rec.params.k:
        store = rec.bundle.store
        vectors = {i: store.text[store.row[i]] for i in set(state.recent_items) if i in store.row}
        state = (
            rebuild_state(state, vectors, model.space, rec.params)
            if vectors
            else _fresh_like(state, rec)
        )
    return state


def _fresh_like(state: InterestState, rec: Recommender) -> InterestState:
    fresh = rec.new_state()
    fresh.purchased, fresh.event_ids = list(state.purchased), list(state.event_ids)
    fresh.n_events, fresh.updated = state.n_events, state.updated
    return fresh


def recommend_all(batch: list[Incoming], rec: Recommender, result: BatchResult) -> None:
    """One batched scoring call for every snapshot; a failure retries event by event."""
    snaps = result.snapshots
    if not snaps:
        return
    now = max(s.event.ts.timestamp() for s in snaps)
    lists: list[list[Rec] | None]
    try:
        lists = list(rec.recommend([s.state for s in snaps], now))
    except Exception:  # fall back to one call per event
        log.exception("batched scoring of %d events failed; retrying one by one", len(snaps))
        lists = []
        for s in snaps:
            try:
                lists.append(rec.recommend([s.state], now)[0])
            except Exception as exc:  # noqa: BLE001 - the event is dead-lettered with the reason
                msg = batch[s.index]
                result.dead[s.index] = dead_letter(
                    exc, msg.key, msg.value, msg.where, "scoring", s.event.event_id
                )
                lists.append(None)
    for s, recs in zip(snaps, lists, strict=True):
        if recs is not None:
            result.recs[s.index] = recs


def process(
    batch: list[Incoming],
    events: dict[int, Event],
    rec: Recommender,
    load: Callable[[str, int], bytes | None],
    dead: dict[int, DeadLetter] | None = None,
) -> BatchResult:
    result = BatchResult(dead=dict(dead or {}), model_version=rec.bundle.model.version)
    apply_events(batch, events, rec, load, result)
    recommend_all(batch, rec, result)
    return result


def recommendation_json(
    user_id: str,
    event_id: str,
    model_version: str,
    recs: list[Rec],
    latency_ms: float,
    created_at: datetime | str | None = None,
) -> bytes:
    """The ``Recommendation`` contract as JSON (built directly with orjson: this is the hot
    path; a unit test checks it against the pydantic model). ``created_at`` may be given
    already formatted (``utc_iso``: once per batch). Raises ValueError on non-finite numbers
    (orjson would write them as ``null``)."""
    if not math.isfinite(latency_ms) or not all(math.isfinite(r.score) for r in recs):
        msg = f"recommendation for event {event_id}: non-finite score or latency"
        raise ValueError(msg)
    if not isinstance(created_at, str):
        created_at = utc_iso(created_at)
    doc = {
        "schema_version": 1,
        "user_id": user_id,
        "trigger_event_id": event_id,
        "model_version": model_version,
        "created_at": created_at,
        "latency_ms": round(max(latency_ms, 0.0), 3),
        "items": [
            {
                "item_id": r.item_id,
                "score": r.score,
                # clamped (NaN -> 0.0, as before): always finite
                "p_click": min(1.0, max(0.0, r.p_click)),
                "p_purchase": min(1.0, max(0.0, r.p_purchase)),
                "interest": r.interest,
                "because": r.because,
            }
            for r in recs
        ],
    }
    return orjson.dumps(doc)


def utc_iso(when: datetime | None = None) -> str:
    """``when`` (default now) as the contract's UTC timestamp, ``...Z``."""
    return (when or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
