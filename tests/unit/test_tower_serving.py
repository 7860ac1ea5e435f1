"""Engine tower-v2 through its real exported graphs (tiny random BERT, tiny world): the
registry opens it as ``TowerServing``, the worker's holder swaps between the two engines both
ways, lists come with learned interests and ``because`` from the user's own recent items, and
replay runs the ranker-v1 version side by side with it (``--compare``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.settings import ServingSettings
from stream_app.core.engine import user_inputs
from stream_app.core.interests import CLICK, PURCHASE, EventLite, state_to_bytes
from stream_app.registry import Registry
from stream_app.replay.runner import run_replay
from stream_app.serving.model import ServingModel, TowerServing, open_version
from stream_app.worker.metrics import Metrics
from stream_app.worker.models import ServingHolder, warm_up
from stream_app.worker.user_view import read_interests
from tests.model_versions import train_registry
from tests.settings import replay_settings
from tests.unit.test_worker_models import records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path, tiny_world: Path,
         tiny_bert: str) -> tuple[Path, str, str]:  # fmt: skip
    """A registry with the tiny ranker-v1 version and a tower-v2 version (CURRENT) trained
    on the same world."""
    root = tmp_path_factory.mktemp("both") / "registry"
    shutil.copytree(tiny_registry, root)
    v1 = Registry(root).require_current()
    train_registry(root, tiny_world, model_path=tiny_bert, engine="tower-v2", epochs=2)
    v2 = Registry(root).require_current()
    assert v2 != v1
    return root, v1, v2


def holder(root: Path) -> ServingHolder:
    from stream_app.core.interests import InterestParams

    return ServingHolder(
        Registry(root), InterestParams(k=4), ServingSettings(top_k=6, explore=0), "cpu", 1,
        None, Metrics(),
    )  # fmt: skip


def world_events(world: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (world / "events.jsonl").read_text().splitlines()]


def test_the_engine_kind_picks_the_serving_class(both):
    root, v1, v2 = both
    reg = Registry(root)
    assert reg.manifest(v2).engine.kind == "tower-v2"
    tower, ranker = open_version(reg, v2, "cpu", 1), open_version(reg, v1, "cpu", 1)
    assert isinstance(tower, TowerServing) and isinstance(ranker, ServingModel)
    assert tower.feat_dim == tower.d + 2 and tower.k == 4
    with pytest.raises(Exception, match="engine 'tower-v2', expected 'ranker-v1'"):
        ServingModel(reg, v2, "cpu", 1)


async def test_tower_lists_explain_themselves_and_swaps_go_both_ways(both, world_items,
                                                                     tiny_world):  # fmt: skip
    root, v1, v2 = both
    h = holder(root)
    await h.load_initial(v2)
    await h.apply_items(records(world_items), [])
    rec, _ = h.serving()
    assert isinstance(rec.bundle.model, TowerServing)
    warm_up(rec)
    # a user with a purchase and clicks on real catalogue items
    events = world_events(tiny_world)
    user = events[0]["user_id"]
    mine = [e for e in events if e["user_id"] == user][:8]
    state = None
    for n, e in enumerate(mine):
        kind = PURCHASE if e["event_type"] == "purchase" else CLICK
        state = rec.apply(state, EventLite(f"t{n}", e["item_id"], 1000.0 + 600 * n, kind))
    assert state is not None
    u = user_inputs(rec.bundle, [state])
    assert u.tower_attn is not None and u.slots.shape == (1, 4, rec.bundle.model.d)
    np.testing.assert_allclose(np.linalg.norm(u.slots[0], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(u.strengths.sum(), 1.0, atol=1e-4)  # weights: softmax over K
    np.testing.assert_allclose(u.tower_attn[0].sum(1), 1.0, atol=1e-4)
    (recs,) = rec.recommend([state], 1000.0 + 600 * len(mine))
    assert len(recs) == 6
    seen = {e["item_id"] for e in mine}
    assert all(np.isfinite(r.score) and 0 <= r.interest < 4 for r in recs)
    assert all(r.because and set(r.because) <= seen for r in recs), [r.because for r in recs]
    # the read API's view of the user: the tower's interests over the stored recent items
    view = read_interests(state_to_bytes(state), rec)
    assert view.interests and all(set(i.items) <= seen for i in view.interests)
    assert [i.strength for i in view.interests] == sorted(
        (i.strength for i in view.interests), reverse=True
    )
    assert sum(i.strength for i in view.interests) <= 1.0 + 1e-4
    assert {e.item_id for e in view.recent} == seen and view.events == len(mine)
    assert all(-1 <= e.interest < 4 for e in view.recent)
    # hot swap to the ranker-v1 version and back: one reference change each time
    assert (await h.swap_to(v1)).ok and isinstance(h.serving()[0].bundle.model, ServingModel)
    assert (await h.swap_to(v2)).ok and isinstance(h.serving()[0].bundle.model, TowerServing)
    assert len(h.serving()[0].bundle.store) == len(world_items)


def test_replay_runs_the_ranker_v1_version_side_by_side(both, tiny_world):
    root, v1, v2 = both
    settings = replay_settings(root, ks=(10,), baselines=("cooc",), ablations=(), max_users=40,
                               compare={"ranker-v1": v1})  # fmt: skip
    out = run_replay(settings, tiny_world / "items.jsonl", tiny_world / "events.jsonl")
    assert out.model.version == v2 and out.model.engine == "tower-v2"
    assert out.model.compared == {"ranker-v1": v1}
    assert list(out.systems) == ["streamrec", "ranker-v1", "cooc"]
    a, b = out.systems["streamrec"], out.systems["ranker-v1"]
    assert a["examples"] == b["examples"] > 0  # the same scored events
    assert 0.0 <= a["ndcg@10"] <= 1.0 and 0.0 <= b["ndcg@10"] <= 1.0
    assert "engine ranker-v1" in out.descriptions["ranker-v1"]


def test_tower_cold_start_seats_a_never_seen_item_by_its_text(both, world_items):
    from schemas.items import validate_item
    from schemas.settings import Settings
    from stream_app.core.engine import Bundle, Recommender
    from stream_app.core.interests import InterestParams
    from stream_app.worker import catalogue as cat
    from tests.unit.test_engine_cold_start import twins_of

    root, _, v2 = both
    model = open_version(Registry(root), v2, "cpu", 1)
    cat0 = world_items[0]["categories"][0]
    cluster = [it for it in world_items if it["categories"][:1] == [cat0]][:6]
    items = world_items + twins_of(cluster[:3])
    recs = [cat.ItemRecord.from_item(validate_item(x), 0.0) for x in items]
    store = cat.build_store(model, recs, cat.VectorResolver(model, None).resolve(recs))
    s = Settings()

    def lists(match: float) -> list[list[Any]]:
        opts = s.serving.model_copy(update={"new_item_match": match})
        rec = Recommender(Bundle(model, store), InterestParams.from_settings(s.interests), opts)
        state, out = None, []
        for n, it in enumerate(cluster[3:] * 2 + cluster[:3]):
            ts = 1_780_000_000 + 60.0 * n
            state = rec.apply(state, EventLite(f"e{n}", it["item_id"], ts, CLICK))
            out.append(rec.recommend([state], ts)[0])
        return out

    new = [[r for r in lst if r.item_id.startswith("new-item-")] for lst in lists(0.5)]
    assert all(len(n) >= 1 for n in new), new
    assert all(r.interest >= 0 for n in new for r in n)  # placed for an interest
    off = [r for lst in lists(0.0) for r in lst if r.item_id.startswith("new-item-")]
    assert all(r.interest == -1 for r in off)  # at most as exploration
