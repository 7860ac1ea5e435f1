"""Per-user interest state: K interest slots plus the last L items, updated one event at a time.

This module is the single definition of how an event changes a user's state. The worker
(faust table values), replay and the trainer (building examples) all call
``update_interests``, so there is no training/serving skew.

Slots live in the *item text vector space* of the model version that built them (``space``,
the encoder's hash). A slot is a unit vector (or all zeros when empty) with a strength that
decays with a half-life and grows with each event assigned to it; purchases weigh more than
clicks. An event's item joins the most similar slot (moving average, step >= min_alpha so
drift is followed) or, when no slot is similar enough, takes an empty slot or replaces the
weakest one. Recent event ids are kept so a redelivered event changes nothing.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import orjson

CLICK, PURCHASE = 0, 1
MAX_STRENGTH = 1e6
_MAGIC = b"SRI1"


@dataclass(frozen=True)
class InterestParams:
    k: int = 4
    recent: int = 50
    half_life_s: float = 14 * 24 * 3600.0
    purchase_weight: float = 3.0
    threshold: float = 0.45
    min_alpha: float = 0.1
    max_event_ids: int = 256
    max_purchased: int = 500

    @classmethod
    def from_settings(cls, s: Any) -> InterestParams:
        """From schemas.settings.InterestSettings (kept duck-typed: no pydantic here)."""
        return cls(
            k=s.k,
            recent=s.recent,
            half_life_s=s.half_life_hours * 3600.0,
            purchase_weight=s.purchase_weight,
            threshold=s.similarity_threshold,
            min_alpha=s.min_alpha,
            max_event_ids=s.max_event_ids,
            max_purchased=s.max_purchased,
        )


class EventLite(NamedTuple):
    """What the state update needs from an event (ts in epoch seconds)."""

    event_id: str
    item_id: str
    ts: float
    kind: int  # CLICK or PURCHASE


def lite(event: Any) -> EventLite:
    """From a schemas event (ClickEvent / PurchaseEvent)."""
    kind = PURCHASE if event.event_type == "purchase" else CLICK
    return EventLite(event.event_id, event.item_id, event.ts.timestamp(), kind)


@dataclass
class InterestState:
    space: str
    slots: np.ndarray  # [K, D] float32; unit rows, zero rows = empty slots
    strength: np.ndarray  # [K] float32 >= 0, decayed to `updated`
    last_seen: np.ndarray  # [K] float64 epoch seconds
    count: np.ndarray  # [K] int32 events assigned
    updated: float = 0.0  # ts of the latest applied event (decay reference)
    recent_items: list[str] = field(default_factory=list)  # oldest .. newest, <= L
    recent_ts: list[float] = field(default_factory=list)
    recent_kind: list[int] = field(default_factory=list)
    recent_slot: list[int] = field(default_factory=list)  # slot the item joined (-1: gone)
    purchased: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    n_events: int = 0

    @property
    def k(self) -> int:
        return int(self.slots.shape[0])

    def active(self) -> np.ndarray:
        return self.count > 0

    def because(self, slot: int, n: int = 3) -> list[str]:
        """Most recent distinct items assigned to ``slot`` (explanations)."""
        out: list[str] = []
        for item, s in zip(reversed(self.recent_items), reversed(self.recent_slot), strict=True):
            if s == slot and item not in out:
                out.append(item)
                if len(out) == n:
                    break
        return out

    def strength_at(self, ts: float, half_life_s: float) -> np.ndarray:
        dt = max(0.0, ts - self.updated)
        return self.strength * np.float32(0.5 ** (dt / half_life_s))  # a new float32 array

    def equals(self, other: InterestState) -> bool:
        return state_to_bytes(self) == state_to_bytes(other)


def new_state(k: int, dim: int, space: str) -> InterestState:
    return InterestState(
        space=space,
        slots=np.zeros((k, dim), np.float32),
        strength=np.zeros(k, np.float32),
        last_seen=np.zeros(k, np.float64),
        count=np.zeros(k, np.int32),
    )


def _unit(vec: np.ndarray, event: EventLite) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(np.sqrt(np.dot(v, v)))  # np.linalg.norm's own formula, without its overhead
    if not math.isfinite(norm) or norm < 1e-8:
        msg = (
            f"item_vec for item {event.item_id!r}: expected a finite non-zero vector, "
            f"got norm {norm}"
        )
        raise ValueError(msg)
    return v / norm


def _append_bounded(seq: list[Any], value: Any, limit: int) -> list[Any]:
    out = [*seq, value]
    return out[-limit:] if len(out) > limit else out


def update_interests(
    state: InterestState, item_vec: np.ndarray, event: EventLite, params: InterestParams
) -> InterestState:
    """Return the state after ``event`` (a new object; the input is not modified).

    An event whose id is already in the state returns the state unchanged (same object).
    """
    if event.event_id in state.event_ids:
        return state
    v = _unit(item_vec, event)
    if v.shape[0] != state.slots.shape[1]:
        msg = f"item_vec: expected dimension {state.slots.shape[1]}, got {v.shape[0]}"
        raise ValueError(msg)
    w = params.purchase_weight if event.kind == PURCHASE else 1.0
    slots = state.slots.copy()
    strength = state.strength_at(event.ts, params.half_life_s)
    last_seen = state.last_seen.copy()
    count = state.count.copy()
    recent_slot = state.recent_slot

    # K is small: the choice of slot on Python lists (numpy's per-call cost dominates here)
    active = (count > 0).tolist()
    sims = [x if a else -math.inf for x, a in zip((slots @ v).tolist(), active, strict=True)]
    j = sims.index(max(sims))  # the first best active slot
    if not any(active) or sims[j] < params.threshold:
        if not all(active):
            j = active.index(False)  # first empty slot
        else:
            # weakest slot; ties -> least recently seen
            j = int(np.lexsort((last_seen, strength))[0])
            recent_slot = [-1 if s == j else s for s in recent_slot]
        slots[j] = v
        strength[j] = w
        count[j] = 1
    else:
        alpha = max(params.min_alpha, w / (float(strength[j]) + w))
        mixed = (1.0 - alpha) * slots[j] + alpha * v
        norm = float(np.sqrt(np.dot(mixed, mixed)))
        slots[j] = mixed / norm if norm > 1e-6 else v
        strength[j] = min(MAX_STRENGTH, float(strength[j]) + w)
        count[j] += 1
    last_seen[j] = max(float(last_seen[j]), event.ts)

    lim = params.recent
    purchased = state.purchased
    if event.kind == PURCHASE and params.max_purchased > 0 and event.item_id not in purchased:
        purchased = _append_bounded(purchased, event.item_id, params.max_purchased)
    return InterestState(
        space=state.space,
        slots=slots,
        strength=strength,
        last_seen=last_seen,
        count=count,
        updated=max(state.updated, event.ts),
        recent_items=_append_bounded(state.recent_items, event.item_id, lim),
        recent_ts=_append_bounded(state.recent_ts, event.ts, lim),
        recent_kind=_append_bounded(state.recent_kind, event.kind, lim),
        recent_slot=_append_bounded(recent_slot, j, lim),
        purchased=purchased,
        event_ids=_append_bounded(state.event_ids, event.event_id, params.max_event_ids),
        n_events=state.n_events + 1,
    )


def rebuild_state(
    state: InterestState, vectors: dict[str, np.ndarray], space: str, params: InterestParams
) -> InterestState:
    """Move a state to another vector space (a new encoder) by replaying its recent items.

    Slot history older than the last L items is lost; ids, purchases and de-dup ids are kept.
    Items without a vector in the new space are skipped.
    """
    fresh = new_state(
        params.k, next(iter(vectors.values())).shape[0] if vectors else state.slots.shape[1], space
    )
    for n, (item, ts, kind) in enumerate(
        zip(state.recent_items, state.recent_ts, state.recent_kind, strict=True)
    ):
        vec = vectors.get(item)
        if vec is not None:
            fresh = update_interests(fresh, vec, EventLite(f"rebuild-{n}", item, ts, kind), params)
    return replace(
        fresh,
        purchased=list(state.purchased),
        event_ids=list(state.event_ids),
        n_events=state.n_events,
        updated=max(fresh.updated, state.updated),
    )


def state_to_bytes(state: InterestState) -> bytes:
    """Compact, lossless encoding for the RocksDB table / changelog."""
    fields = [
        state.space,
        state.updated,
        state.n_events,
        state.recent_items,
        state.recent_ts,
        state.recent_kind,
        state.recent_slot,
        state.purchased,
        state.event_ids,
    ]
    # orjson (several times json.dumps on this path) writes a non-finite float as null: such
    # a header (never from a validated event) goes through json, which keeps it
    finite = math.isfinite(state.updated) and all(map(math.isfinite, state.recent_ts))
    header = orjson.dumps(fields) if finite else json.dumps(fields, separators=(",", ":")).encode()
    k, d = state.slots.shape
    return b"".join(
        (
            _MAGIC,
            struct.pack("<III", len(header), k, d),
            header,
            np.ascontiguousarray(state.slots, np.float32).tobytes(),
            np.ascontiguousarray(state.strength, np.float32).tobytes(),
            np.ascontiguousarray(state.last_seen, np.float64).tobytes(),
            np.ascontiguousarray(state.count, np.int32).tobytes(),
        )
    )


def _loads_header(header: bytes) -> Any:
    try:
        return orjson.loads(header)
    except orjson.JSONDecodeError:  # NaN / Infinity (json's spelling; see state_to_bytes)
        return json.loads(header)


def state_from_bytes(raw: bytes) -> InterestState:
    if raw[:4] != _MAGIC:
        msg = f"interest state: expected magic {_MAGIC!r}, got {raw[:4]!r}"
        raise ValueError(msg)
    hlen, k, d = struct.unpack_from("<III", raw, 4)
    off = 16
    h = _loads_header(raw[off : off + hlen])
    off += hlen
    buf = memoryview(raw)

    def take(dtype: Any, n: int) -> np.ndarray:
        nonlocal off
        arr = np.frombuffer(buf, dtype=dtype, count=n, offset=off).copy()
        off += arr.nbytes
        return arr

    slots = take(np.float32, k * d).reshape(k, d)
    return InterestState(
        space=h[0],
        slots=slots,
        strength=take(np.float32, k),
        last_seen=take(np.float64, k),
        count=take(np.int32, k),
        updated=h[1],
        n_events=h[2],
        recent_items=h[3],
        recent_ts=h[4],
        recent_kind=h[5],
        recent_slot=h[6],
        purchased=h[7],
        event_ids=h[8],
    )
