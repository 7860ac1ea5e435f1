"""The read API and the dashboard page against a worker fed by the REAL broker: the list
``/recommendations/USER`` returns is the one last published for USER on the topic, the page
(in a real headless chromium) shows the numbers ``/metrics`` has, a user lookup shows that
user's interests and latest list, and a screenshot is saved. The per-user endpoints need the
bearer token the worker was given; faust's sensors share streamrec's /metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from worker_harness import (
    TopicReader,
    event_records,
    produce,
    setup_topics_and_items,
    worker_process,
)

from schemas.api import ModelsView, Overview, UserView
from schemas.recommendations import Recommendation
from schemas.settings import Settings
from stream_app.kafka.io import read_lines
from stream_app.worker.process import WorkerProcess
from tests.browser import browser_page

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
TOKEN = "dashboard-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _get(worker: WorkerProcess, path: str, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _events(world: Path, n_users: int, limit: int) -> list[bytes]:
    users: list[str] = []
    out = []
    for line in read_lines(world / "events.jsonl"):
        u = json.loads(line)["user_id"]
        if u not in users and len(users) < n_users:
            users.append(u)
        if u in users:
            out.append(line)
        if len(out) >= limit:
            break
    return out


def _last_published(records: list[Any]) -> dict[str, bytes]:
    """user -> the value of the last record for that user (a user lives on one partition)."""
    last: dict[str, bytes] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        last[r.key.decode()] = r.value
    return last


def _check_page(worker: WorkerProcess, user: str, shot: Path) -> dict[str, Any]:
    """Load the dashboard, wait for the counters, read them and look ``user`` up."""
    with browser_page() as page:
        page.goto(f"http://127.0.0.1:{worker.port}/dashboard")
        page.wait_for_function(
            "document.querySelector('[data-metric=\"streamrec_events_in_total\"]')"
            ".textContent !== '–'",
            timeout=30_000,
        )
        page.wait_for_selector("#versions tbody tr", timeout=30_000)
        tiles = page.eval_on_selector_all(
            "#counters [data-metric]",
            "els => els.map(e => [e.dataset.metric, e.textContent])",
        )
        dlq_rows = page.eval_on_selector_all(
            "#dlq tbody tr", "els => els.map(e => [e.dataset.metric, e.cells[1].textContent])"
        )
        charts = page.eval_on_selector_all(".charts canvas", "els => els.length")
        page.fill("#user-id", user)
        page.fill("#token", TOKEN)
        page.click("#user-form button")
        page.wait_for_selector("#user-result:not([hidden])", timeout=15_000)
        shown = {
            "interests": page.eval_on_selector_all(
                "#interests .card", "els => els.map(e => e.querySelector('.name').textContent)"
            ),
            "latest": page.eval_on_selector_all(
                "#latest tbody tr", "els => els.map(e => e.dataset.item)"
            ),
            "recent": page.eval_on_selector_all("#recent tbody tr", "els => els.length"),
        }
        page.screenshot(path=str(shot), full_page=True)
    return {"tiles": tiles, "dlq": dlq_rows, "charts": charts, **shown}


def _number(text: str) -> float:
    return float(text.replace(",", ""))


async def test_read_api_and_dashboard_against_the_real_broker(
    kafka_settings: Settings, tiny_world: Path, tiny_registry: Path, tmp_path: Path
):
    await setup_topics_and_items(kafka_settings, tiny_world / "items.jsonl")
    events = _events(tiny_world, 12, 240)
    bad: list[tuple[bytes | None, bytes | None]] = [
        (b"u-bad", b"{not json"),
        (b"u-bad", json.dumps({"event_id": "x", "event_type": "view"}).encode()),
    ]
    worker = worker_process(kafka_settings, tiny_registry, tmp_path / "logs", web_token=TOKEN)
    worker.start()
    try:
        await worker.wait_ready()
        async with TopicReader(kafka_settings, kafka_settings.topics.recommendations) as recs:
            await produce(
                kafka_settings, kafka_settings.topics.events, [*event_records(events), *bad]
            )
            await recs.wait_for(lambda r: len(r) >= len(events), 90, "recommendations")
            await asyncio.sleep(1.5)  # every ack counted, nothing more on its way
            published = _last_published(recs.records)
        metrics = worker.metrics()

        # /recommendations/USER: the bytes last published for USER, behind the token
        assert _get(worker, f"/recommendations/{next(iter(published))}")[0] == 401
        for user, value in published.items():
            status, body = _get(worker, f"/recommendations/{user}", AUTH)
            assert status == 200, (user, body)
            assert body == value, user
        assert _get(worker, "/recommendations/nobody", AUTH)[0] == 404

        overview = Overview.model_validate_json(_get(worker, "/api/overview")[1])
        c = overview.counters
        assert c.events_in == metrics["streamrec_events_in_total"] == len(events) + len(bad)
        assert c.recommendations_out == metrics["streamrec_recommendations_out_total"]
        assert c.dlq == {"json": 1, "schema": 1}
        assert sum(overview.series.events_per_s) + 2 >= len(events)  # the last second may lag
        assert any(p is not None for p in overview.series.latency_p99_ms)
        assert any(name.startswith("faust_") for name in metrics), "faust's sensors"
        assert metrics[
            'faust_table_operations_total{operation="keys_updated",table="table.user-state"}'
        ]
        assert "faust_consumer_commit_latency_count" in metrics

        models = ModelsView.model_validate_json(_get(worker, "/models")[1])
        current = (tiny_registry / "CURRENT").read_text().strip()
        assert models.current == models.serving == current
        assert [s.kind for s in models.swaps] == ["loaded"]
        assert next(v for v in models.versions if v.version == current).current

        user = max(published, key=lambda u: sum(json.loads(e)["user_id"] == u for e in events))
        status, body = _get(worker, f"/api/users/{user}", AUTH)
        assert status == 200, body
        view = UserView.model_validate_json(body)
        assert view.latest == Recommendation.model_validate_json(published[user])
        mine = {json.loads(e)["item_id"] for e in events if json.loads(e)["user_id"] == user}
        assert view.interests and all(i.name and i.items for i in view.interests)
        assert {r.item_id for i in view.interests for r in i.items} <= mine

        shot = tmp_path / "dashboard.png"
        page = await asyncio.to_thread(_check_page, worker, user, shot)
    finally:
        worker.stop()
    for metric, text in page["tiles"]:
        assert _number(text) == metrics[metric], metric
    assert sorted(map(tuple, page["dlq"])) == sorted(
        (k, str(int(v))) for k, v in metrics.items() if k.startswith("streamrec_dlq_total{")
    )
    assert page["charts"] == 3
    assert len(page["interests"]) == len(view.interests)
    assert page["latest"] == [i.item_id for i in view.latest.items]
    assert page["recent"] == len(view.recent_events)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"dashboard screenshot: {shot}")
