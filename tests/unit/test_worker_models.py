"""Catalogue vectors (cache, reuse, training vectors keyed by text) and the serving holder's
hot-swap and shadow protocol, with the real tiny trained model and versions made from it (no
broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.items import validate_item
from schemas.settings import ServingSettings
from stream_app.core.engine import Bundle, Recommender
from stream_app.core.interests import InterestParams
from stream_app.registry import Registry
from stream_app.worker import catalogue as cat
from stream_app.worker.metrics import Metrics, parse_counters
from stream_app.worker.models import ServingHolder, SwapRefused, warm_up


def records(items: list[dict[str, Any]]) -> list[cat.ItemRecord]:
    return [cat.ItemRecord.from_item(validate_item(it), 0.0) for it in items]


def new_items(world_items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Items no version was trained on (new ids, new texts)."""
    return [
        {**it, "item_id": f"new-{j}", "title": f"{it['title']} (new edition {j})"}
        for j, it in enumerate(world_items[:n])
    ]


class Counting:
    """Records the texts a real model's encoder is asked to encode."""

    def __init__(self, model: Any) -> None:
        self.texts: list[str] = []
        self._encode = model.encode
        model.encode = self

    def __call__(self, texts: list[str], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        self.texts += texts
        return self._encode(texts, batch)


def test_resolver_reuses_known_vectors_then_the_cache_and_encodes_only_the_rest(
    versions, world_items, tmp_path: Path
):
    model = versions.model("v1")
    spy = Counting(model)
    cache = cat.VectorCache(tmp_path / "vec")
    recs = records(world_items[:20])
    first = cat.VectorResolver(model, cache, use_training=False).resolve(recs[:10])
    assert spy.texts == [r.text for r in recs[:10]]
    known = {r.item_id: (r.text_sha, v) for r, v in zip(recs[:10], first, strict=True)}
    spy.texts.clear()
    again = cat.VectorResolver(model, cache, use_training=False).resolve(recs, known)
    assert spy.texts == [r.text for r in recs[10:20]]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again[:10], strict=True))
    spy.texts.clear()
    fresh = cat.VectorResolver(model, cache, use_training=False).resolve(recs)
    assert spy.texts == []  # all 20 from the persistent cache
    assert np.allclose(fresh[15][0], again[15][0])
    # a changed text is a different key: encoded again
    edited = records([{**world_items[0], "title": "an edited title"}])
    cat.VectorResolver(model, cache, use_training=False).resolve(edited, known)
    assert spy.texts == [edited[0].text]
    cache.close()


def test_encoder_key_changes_with_space_and_with_a_tuned_content_encoder(versions):
    a, b, tuned = versions.model("v1"), versions.model("space2"), versions.model("tuned")
    keys = {cat.encoder_key(m) for m in (a, b, tuned)}
    assert len(keys) == 3 and cat.encoder_key(a) == a.space
    assert cat.encoder_key(tuned).startswith(a.space + "+")


def test_training_vectors_are_reused_only_for_unchanged_texts(versions, world_items):
    model = versions.model("v1")
    spy = Counting(model)
    edited = {**world_items[2], "title": "a title the model was not trained on"}
    recs = records([*world_items[:2], edited])
    out = cat.VectorResolver(model, None).resolve(recs)
    assert spy.texts == [recs[2].text]  # the edited item is encoded again, not looked up by id
    with np.load(model.dir / cat.TRAINING_VECTORS) as z:
        row = list(z["item_ids"]).index(world_items[1]["item_id"])
        assert np.array_equal(out[1][0], z["text"][row])
    # the encoder really produces what training stored (same encoder, same text)
    fresh = model.encode([recs[1].text])[0][0]
    assert float(np.dot(fresh, out[1][0])) > 0.999
    # versions written before text hashes were stored: matched by item id alone
    legacy = versions.model("legacy")
    spy = Counting(legacy)
    cat.VectorResolver(legacy, None).resolve(recs)
    assert spy.texts == []


def test_catalogue_state_tracks_changes_for_a_swap_to_catch_up(world_items):
    state = cat.CatalogueState()
    recs = records(world_items[:3])
    vec = (np.zeros(2), np.zeros(2))
    state.apply([(r, vec) for r in recs], [])
    seq = state.seq
    state.apply([(recs[0], vec)], [recs[2].item_id])
    assert sorted(state.changed_since(seq)) == sorted([recs[0].item_id, recs[2].item_id])
    assert recs[2].item_id not in state.records and len(state) == 2


def holder(
    versions, metrics: Metrics | None = None, opts: ServingSettings | None = None
) -> ServingHolder:
    return ServingHolder(
        Registry(versions.root),
        InterestParams(k=4),
        opts or ServingSettings(top_k=5),
        "cpu",
        1,
        None,
        metrics or Metrics(),
    )


async def loaded(versions, world_items, extra: int = 0, metrics: Metrics | None = None):
    h = holder(versions, metrics)
    await h.load_initial(versions.v1)
    await h.apply_items(records(world_items + new_items(world_items, extra)), [])
    return h


async def test_swap_reuses_vectors_keeps_popularity_and_changes_one_reference(
    versions, world_items
):
    metrics = Metrics()
    h = await loaded(versions, world_items, 5, metrics)
    old = h.recommender
    assert old is not None and len(old.bundle.store) == len(world_items) + 5
    assert h.resolver is not None and h.resolver.encoded == 5  # the rest: training vectors
    first = world_items[0]["item_id"]
    old.bundle.store.bump(old.bundle.store.row[first], 1.0, 5.0)
    swapped: list[tuple[str, str]] = []
    h.on_swap.append(lambda a, b: swapped.append((a, b)))
    result = await h.swap_to(versions.same)
    assert result is not None and result.ok and not result.reencoded
    new = h.recommender
    assert new is not old and h.version == versions.same
    assert h.resolver.encoded == 0  # same encoder: every vector reused, features recomputed
    # the same encoder files: the new version runs on the served one's encoder session
    assert new.bundle.model.encoder is old.bundle.model.encoder
    assert new.bundle.store.pop[new.bundle.store.row[first]] == pytest.approx(
        old.bundle.store.pop[old.bundle.store.row[first]]
    )
    assert swapped == [(versions.v1, versions.same)]
    m = parse_counters(metrics.render().decode())
    assert m["streamrec_model_swaps_total"] == 1
    assert m[f'streamrec_model_info{{version="{versions.same}"}}'] == 1
    assert f'streamrec_model_info{{version="{versions.v1}"}}' not in m


def test_encoder_sessions_are_shared_only_between_identical_encoder_files(versions):
    from stream_app.registry import Registry
    from stream_app.serving.model import open_version

    reg, v1 = Registry(versions.root), versions.model("v1")
    same = open_version(reg, versions.same, "cpu", 1, reuse=v1)
    assert same.encoder is v1.encoder and same.content_encoder is v1.content_encoder
    texts = ["red running shoes", "a book about the sea"]
    fresh = open_version(reg, versions.same, "cpu", 1)
    assert fresh.encoder is not v1.encoder
    np.testing.assert_array_equal(same.encode(texts)[0], fresh.encode(texts)[0])
    # its own content encoder file (a tuned encoder): nothing shared
    tuned = open_version(reg, versions.tuned, "cpu", 1, reuse=v1)
    assert tuned.encoder is not v1.encoder and tuned.content_encoder is not v1.content_encoder
    # other threads (or device): sessions are built for this version's settings
    assert open_version(reg, versions.same, "cpu", 2, reuse=v1).encoder is not v1.encoder


async def test_the_served_and_the_swapped_in_bundle_search_with_the_ann_threads_setting(
    versions, world_items
):
    h = holder(versions, opts=ServingSettings(top_k=5, ann_threads=2))
    await h.load_initial(versions.v1)
    assert h.recommender is not None and h.recommender.bundle.retriever.threads == 2  # type: ignore[attr-defined]
    result = await h.swap_to(versions.same)
    assert result is not None and result.ok
    assert h.recommender.bundle.retriever.threads == 2  # type: ignore[attr-defined]


async def test_swap_to_a_new_encoder_re_encodes_the_catalogue(versions, world_items):
    h = await loaded(versions, world_items, 5)
    result = await h.swap_to(versions.space2)
    assert result is not None and result.ok and result.reencoded
    assert h.catalogue.key == h.recommender.bundle.model.space  # type: ignore[union-attr]
    assert h.resolver is not None and h.resolver.encoded == 5  # not in its training vectors


async def test_a_bad_version_is_refused_remembered_and_the_old_one_keeps_serving(
    versions, world_items
):
    metrics = Metrics()
    h = await loaded(versions, world_items, metrics=metrics)
    for bad in (versions.tampered, versions.nan):
        result = await h.swap_to(bad)
        assert result is not None and not result.ok
        assert h.version == versions.v1
    assert "sha256" in h.refused[versions.tampered] and "not finite" in h.refused[versions.nan]
    assert await h.swap_to(versions.tampered) is None  # not retried on every poll
    assert (await h.swap_to(versions.tampered, retry_refused=True)) is not None  # a new notice
    assert parse_counters(metrics.render().decode())["streamrec_model_refusals_total"] == 3


async def test_items_changed_during_a_swap_reach_the_new_store(versions, world_items):
    h = holder(versions)
    await h.load_initial(versions.v1)
    await h.apply_items(records(world_items[:250]), [])
    original = cat.build_store

    def slow_build(*args, **kwargs):  # type: ignore[no-untyped-def]
        import time

        time.sleep(0.3)  # the swap builds off-loop while the feed keeps applying items
        return original(*args, **kwargs)

    cat.build_store = slow_build  # type: ignore[assignment]
    try:
        swap = asyncio.create_task(h.swap_to(versions.same))
        await asyncio.sleep(0.1)
        await h.apply_items(records(world_items[250:]), [world_items[0]["item_id"]])
        await swap
    finally:
        cat.build_store = original  # type: ignore[assignment]
    store = h.recommender.bundle.store  # type: ignore[union-attr]
    assert h.version == versions.same and len(store) == len(world_items) - 1
    assert world_items[0]["item_id"] not in store and world_items[-1]["item_id"] in store


async def test_a_shadow_version_loads_beside_follows_the_catalogue_and_is_never_served(
    versions, world_items
):
    h = await loaded(versions, world_items)
    served = h.recommender
    shadow = await h.load_shadow(versions.inverted)
    assert h.recommender is served and h.version == versions.v1  # nothing swapped
    assert shadow.bundle.store is not served.bundle.store  # type: ignore[union-attr]
    await h.apply_items(records(new_items(world_items, 2)), [world_items[0]["item_id"]])
    for store in (served.bundle.store, shadow.bundle.store):  # type: ignore[union-attr]
        assert "new-0" in store and "new-1" in store and world_items[0]["item_id"] not in store
    with pytest.raises(Exception, match="not finite"):
        await h.load_shadow(versions.nan)
    assert h.shadow is shadow  # a failed load leaves the loaded shadow alone
    h.drop_shadow()
    assert h.shadow is None


def test_warm_up_refuses_non_finite_scores(versions, world_items):
    recs = records(world_items)
    for name, ok in (("v1", True), ("nan", False)):
        model = versions.model(name)
        store = cat.build_store(model, recs, cat.VectorResolver(model, None).resolve(recs))
        rec = Recommender(Bundle(model, store), InterestParams(k=4), ServingSettings())
        if ok:
            warm_up(rec)
            assert store.pop.sum() == 0  # warm-up events leave no popularity behind
        else:
            with pytest.raises(SwapRefused, match="not finite"):
                warm_up(rec)


def test_warm_up_also_scores_one_full_batch(versions, world_items):
    recs = records(world_items)
    model = versions.model("v1")
    store = cat.build_store(model, recs, cat.VectorResolver(model, None).resolve(recs))
    opts = ServingSettings(batch_size=24)
    rec = Recommender(Bundle(model, store), InterestParams(k=4), opts)
    sizes: list[int] = []
    score = rec.recommend

    def spy(states, now):
        sizes.append(len(states))
        return score(states, now)

    rec.recommend = spy  # type: ignore[method-assign]
    warm_up(rec)
    # the first full batch the version serves finds ONNX Runtime's buffers grown already
    assert sizes[0] < 24 and max(sizes) == 24
    assert store.pop.sum() == 0
