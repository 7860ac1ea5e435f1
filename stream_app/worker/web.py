"""Web views on the worker's faust web port: ``/health``, ``/metrics`` (Prometheus) and
``/state/{user_id}`` (a user's interest state read through the table, forwarded to the worker
that owns the user's partition; for operators and the tests that check recovery)."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from stream_app.core.interests import InterestState, state_from_bytes
from stream_app.worker.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from stream_app.worker.runtime import WorkerRuntime


def state_summary(raw: bytes) -> dict[str, Any]:
    """JSON view of a stored state; ``sha256`` of the exact bytes makes equality checkable."""
    s: InterestState = state_from_bytes(raw)
    return {
        "sha256": hashlib.sha256(raw).hexdigest(),
        "space": s.space,
        "n_events": s.n_events,
        "updated": s.updated,
        "event_ids": s.event_ids,
        "recent_items": s.recent_items,
        "purchased": s.purchased,
        "slots": [
            {
                "strength": float(s.strength[j]),
                "count": int(s.count[j]),
                "last_seen": float(s.last_seen[j]),
                "because": s.because(j),
            }
            for j in range(s.k)
        ],
    }


def register(app: Any, rt: WorkerRuntime) -> None:
    @app.page("/health")
    async def health(view: Any, request: Any) -> Any:
        body = {**rt.health(), "pid": os.getpid()}
        return view.json(body, status=200 if body["status"] == "ok" else 503)

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        return view.bytes(rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/state/{user_id}")
    @app.table_route(table=rt.table, match_info="user_id")  # served by the worker owning the key
    async def state(view: Any, request: Any, user_id: str) -> Any:
        raw = rt.table.get(user_id)
        if raw is None:
            return view.json({"user_id": user_id, "found": False}, status=404)
        return view.json({"user_id": user_id, "found": True, **state_summary(raw)})
