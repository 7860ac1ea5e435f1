"""The worker's web port (faust web): for people, a live dashboard; for programs, a read API.

- ``/health``, ``/metrics`` (Prometheus: streamrec's metrics and faust's, one registry);
- ``/dashboard`` (the page, its script and style bundled at build time from
  ``web/dashboard/``), ``/api/overview``, ``/models`` (see ``schemas.api``);
- per user, answered by the worker that owns the user's partition (a request to another
  worker is forwarded there, as faust's ``table_route`` does): ``/recommendations/{user_id}``
  (the list last published, byte for byte), ``/api/users/{user_id}`` (interests, recent
  events, latest list), ``/state/{user_id}`` (the raw interest state, for operators and the
  recovery tests). With ``serving.web_token`` set, these three need
  ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from functools import wraps
from importlib import resources
from typing import TYPE_CHECKING, Any

from schemas.api import ApiError
from stream_app.core.interests import InterestState, state_from_bytes
from stream_app.worker import views
from stream_app.worker.metrics import CONTENT_TYPE
from stream_app.worker.user_view import read_interests, user_view

if TYPE_CHECKING:
    from stream_app.worker.runtime import WorkerRuntime

JSON = "application/json"
STATIC = {
    "/dashboard": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
Handler = Callable[..., Awaitable[Any]]


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


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """No token configured: open. Else ``Bearer <token>``, compared in constant time."""
    if expected is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)


def _error(view: Any, status: int, message: str, user_id: str | None = None) -> Any:
    body = ApiError(error=message, user_id=user_id).model_dump_json(exclude_none=True)
    return view.bytes(body.encode(), content_type=JSON, status=status)


def _static(name: str) -> bytes:
    return (resources.files("stream_app.worker") / "static" / name).read_bytes()


def register(app: Any, rt: WorkerRuntime) -> None:
    secret = rt.settings.serving.web_token
    token = (secret.get_secret_value() if secret is not None else "") or None  # "": open

    def per_user(fun: Handler) -> Handler:
        """Bearer token first (checked where the request arrives), then to the owner."""
        routed = app.table_route(table=rt.table, match_info="user_id")(fun)

        @wraps(fun)
        async def guarded(view: Any, request: Any, user_id: str) -> Any:
            if not token_ok(token, request.headers.get("Authorization")):
                return _error(view, 401, "expected header Authorization: Bearer <token>")
            return await routed(view, request, user_id)

        return guarded

    @app.page("/health")
    async def health(view: Any, request: Any) -> Any:
        body = {**rt.health(), "pid": os.getpid()}
        return view.json(body, status=200 if body["status"] == "ok" else 503)

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        return view.bytes(rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/api/overview")
    async def overview(view: Any, request: Any) -> Any:
        body = views.overview(rt).model_dump_json()
        return view.bytes(body.encode(), content_type=JSON)

    @app.page("/models")
    async def models(view: Any, request: Any) -> Any:
        doc = await asyncio.to_thread(views.models_view, rt)
        return view.bytes(doc.model_dump_json().encode(), content_type=JSON)

    @app.page("/recommendations/{user_id}")
    @per_user
    async def recommendations(view: Any, request: Any, user_id: str) -> Any:
        published = rt.latest.get(user_id)
        if published is None:
            msg = "no recommendation published for this user since this worker started"
            return _error(view, 404, msg, user_id)
        return view.bytes(published, content_type=JSON)

    @app.page("/api/users/{user_id}")
    @per_user
    async def user(view: Any, request: Any, user_id: str) -> Any:
        raw = rt.table.get(user_id)
        if raw is None:
            return _error(view, 404, "no state for this user", user_id)
        served = rt.holder.recommender
        doc = user_view(
            user_id,
            read_interests(raw, served),
            rt.holder.catalogue.records,
            rt.latest.get(user_id),
        )
        return view.bytes(doc.model_dump_json().encode(), content_type=JSON)

    @app.page("/state/{user_id}")
    @per_user
    async def state(view: Any, request: Any, user_id: str) -> Any:
        raw = rt.table.get(user_id)
        if raw is None:
            return view.json({"user_id": user_id, "found": False}, status=404)
        return view.json({"user_id": user_id, "found": True, **state_summary(raw)})

    for path, (name, content_type) in STATIC.items():
        body = _static(name)

        async def page(view: Any, request: Any, body: bytes = body, ct: str = content_type) -> Any:
            return view.bytes(body, headers={"Content-Type": ct})

        app.page(path, name=f"static:{name}")(page)

    @app.page("/")
    async def root(view: Any, request: Any) -> Any:
        return view.bytes(b"", status=302, headers={"Location": "/dashboard"})
