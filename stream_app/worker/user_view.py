"""A user as the read API shows it (``GET /api/users/{user_id}``): interests named by what
their items share, recent events, the latest published recommendation.

``read_interests`` is the ONE place that reads the engine's stored user state for this view:
an engine with another state format re-points it and nothing else here changes. The rest
reads only the catalogue records and the published ``Recommendation`` contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from schemas.api import InterestView, ItemRef, RecentEvent, UserView
from schemas.recommendations import Recommendation
from stream_app.core.engine import Recommender, user_inputs
from stream_app.core.interest_names import name_interest
from stream_app.core.interests import PURCHASE, InterestState, state_from_bytes
from stream_app.worker.catalogue import ItemRecord

MAX_ITEMS_PER_INTEREST = 8
MAX_RECENT_EVENTS = 20
LEARNED_MIN_ATTN = 0.05  # a recent item belongs to a learned interest above this attention


@dataclass(frozen=True)
class StateInterest:
    index: int
    strength: float
    events: int
    last_seen: float | None  # epoch seconds
    items: list[str]  # newest first, distinct


@dataclass(frozen=True)
class StateEvent:
    item_id: str
    purchase: bool
    ts: float
    interest: int  # -1: none any more


@dataclass(frozen=True)
class UserInterests:
    events: int
    updated: float | None
    interests: list[StateInterest]  # strongest first
    recent: list[StateEvent]  # newest first


def read_interests(raw: bytes, rec: Recommender[Any] | None = None) -> UserInterests:
    """The stored state (``stream_app.core.interests``) -> interests + events. With a served
    version that has a learned user tower (tower-v2, ``rec``), the interests are the tower's
    over the stored recent items (what the next list is built from): weight = strength, items
    = the recent items that weigh most in it; else the state's rule-built slots."""
    s = state_from_bytes(raw)
    learned = _learned(s, rec) if rec is not None else None
    if learned is not None:
        return learned
    interests = []
    for j in range(s.k):
        if s.count[j] <= 0:
            continue
        items = [
            item
            for item, slot in zip(reversed(s.recent_items), reversed(s.recent_slot), strict=True)
            if slot == j
        ]
        interests.append(
            StateInterest(
                j,
                float(s.strength[j]),
                int(s.count[j]),
                float(s.last_seen[j]) or None,
                list(dict.fromkeys(items)),
            )
        )
    interests.sort(key=lambda i: -i.strength)
    recent = [
        StateEvent(item, kind == PURCHASE, ts, slot)
        for item, ts, kind, slot in zip(
            reversed(s.recent_items),
            reversed(s.recent_ts),
            reversed(s.recent_kind),
            reversed(s.recent_slot),
            strict=True,
        )
    ]
    return UserInterests(s.n_events, s.updated or None, interests, recent)


def _learned(s: InterestState, rec: Recommender[Any]) -> UserInterests | None:
    u = user_inputs(rec.bundle, [s])
    if u.tower_attn is None:
        return None
    store = rec.bundle.store
    rows, attn, weights = u.rec_rows[0], u.tower_attn[0], u.strengths[0]
    n_rec = int((rows >= 0).sum())
    recent_ts = dict(zip(reversed(s.recent_items), reversed(s.recent_ts), strict=True))
    interests, owner = [], attn[:, :n_rec].argmax(0) if n_rec else np.zeros(0, np.int64)
    for j in range(attn.shape[0]):
        order = [int(x) for x in np.argsort(-attn[j, :n_rec]) if attn[j, x] > LEARNED_MIN_ATTN]
        items = list(dict.fromkeys(store.id_of(int(rows[x])) for x in order))
        if not items or weights[j] <= 0:
            continue
        mine = int((owner == j).sum())
        last = max(recent_ts.get(i, 0.0) for i in items)
        interests.append(StateInterest(j, float(weights[j]), mine, last or None, items))
    interests.sort(key=lambda i: -i.strength)
    slot_of = {store.id_of(int(rows[x])): int(owner[x]) for x in range(n_rec) if rows[x] >= 0}
    recent = [
        StateEvent(item, kind == PURCHASE, ts, slot_of.get(item, -1))
        for item, ts, kind in zip(
            reversed(s.recent_items), reversed(s.recent_ts), reversed(s.recent_kind), strict=True
        )
    ]
    return UserInterests(s.n_events, s.updated or None, interests, recent)


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def _ref(item_id: str, records: Mapping[str, ItemRecord]) -> ItemRef:
    r = records.get(item_id)
    if r is None:
        return ItemRef(item_id=item_id, text=None, categories=[])
    return ItemRef(item_id=item_id, text=r.text, categories=list(r.categories))


def user_view(
    user_id: str,
    state: UserInterests,
    records: Mapping[str, ItemRecord],
    latest: bytes | None,
) -> UserView:
    """``records``: the worker's catalogue; ``latest``: the bytes last published for the user."""
    views = []
    for it in state.interests:
        refs = [_ref(i, records) for i in it.items[:MAX_ITEMS_PER_INTEREST]]
        name = name_interest([(r.text or "", r.categories) for r in refs if r.text is not None])
        views.append(
            InterestView(
                interest=it.index,
                strength=it.strength,
                events=it.events,
                last_seen=_ts(it.last_seen),
                name=name.label,
                categories=name.categories,
                words=name.words,
                items=refs,
            )
        )
    recent = [
        RecentEvent(
            item_id=e.item_id,
            event_type="purchase" if e.purchase else "click",
            ts=datetime.fromtimestamp(e.ts, tz=UTC),
            interest=e.interest,
        )
        for e in state.recent[:MAX_RECENT_EVENTS]
    ]
    return UserView(
        user_id=user_id,
        events=state.events,
        updated=_ts(state.updated),
        interests=views,
        recent_events=recent,
        latest=Recommendation.model_validate_json(latest) if latest is not None else None,
    )
