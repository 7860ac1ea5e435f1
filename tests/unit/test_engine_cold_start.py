"""Cold start in the engine with the real tiny trained model: items the model has never seen
(no id embedding, no co-visitation) are found by content and given a seat when their text
matches an interest the user is building; with the feature off they are not."""

from __future__ import annotations

from typing import Any

from schemas.items import validate_item
from schemas.settings import Settings
from stream_app.core.engine import Bundle, Recommender
from stream_app.core.interests import CLICK, EventLite, InterestParams
from stream_app.worker import catalogue as cat


def twins_of(cluster: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**it, "item_id": f"new-item-{j}", "title": it["title"] + " II", "ts": "2026-06-01T00:00Z"}
        for j, it in enumerate(cluster)
    ]


def lists_for(versions, items: list[dict[str, Any]], clicks: list[str], match: float):
    model = versions.model("v1")
    recs = [cat.ItemRecord.from_item(validate_item(x), 0.0) for x in items]
    store = cat.build_store(model, recs, cat.VectorResolver(model, None).resolve(recs))
    s = Settings()
    opts = s.serving.model_copy(update={"new_item_match": match})
    rec = Recommender(Bundle(model, store), InterestParams.from_settings(s.interests), opts)
    state, out = None, []
    for n, item_id in enumerate(clicks):
        ts = 1_780_000_000 + 60.0 * n
        state = rec.apply(state, EventLite(f"e{n}", item_id, ts, CLICK))
        out.append(rec.recommend([state], ts)[0])
    return out


def test_new_items_matching_an_interest_get_a_seat_and_only_then(versions, world_items):
    cat0 = world_items[0]["categories"][0]
    cluster = [it for it in world_items if it["categories"][:1] == [cat0]][:6]
    assert len(cluster) == 6
    items = world_items + twins_of(cluster[:3])
    clicks = [it["item_id"] for it in cluster[3:] * 2 + cluster[:3]]

    on = lists_for(versions, items, clicks, match=0.5)
    new = [[r for r in lst if r.item_id.startswith("new-item-")] for lst in on]
    assert all(len(n) == 1 for n in new), [[r.item_id for r in lst] for lst in on]
    assert all(n[0].interest >= 0 for n in new)  # placed for an interest, not as exploration

    off = lists_for(versions, items, clicks, match=0.0)
    seated = [r for lst in off for r in lst if r.item_id.startswith("new-item-")]
    assert all(r.interest == -1 for r in seated)  # at most as exploration
