"""Catalogue vectors (cache, reuse, training vectors) and the serving holder's hot-swap
protocol, with a numpy stand-in model (no broker, no ONNX)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from test_worker_fakes import FakeModel, catalogue_items

from schemas.items import validate_item
from stream_app.core.engine import EngineOptions
from stream_app.core.interests import InterestParams
from stream_app.core.serving import ModelLoadError
from stream_app.worker import catalogue as cat
from stream_app.worker.metrics import Metrics, parse_counters
from stream_app.worker.models import ServingHolder, SwapRefused, warm_up


def records(items: list[dict] | None = None) -> list[cat.ItemRecord]:
    return [cat.ItemRecord.from_item(validate_item(it), 0.0) for it in items or catalogue_items()]


def test_resolver_reuses_known_vectors_then_the_cache_and_encodes_only_the_rest(tmp_path: Path):
    model = FakeModel()
    cache = cat.VectorCache(tmp_path / "vec")
    recs = records()
    first = cat.VectorResolver(model, cache).resolve(recs[:10])  # type: ignore[arg-type]
    assert len(model.encoded) == 10
    known = {r.item_id: (r.text_sha, v) for r, v in zip(recs[:10], first, strict=True)}
    model.encoded.clear()
    again = cat.VectorResolver(model, cache).resolve(recs[:20], known)  # type: ignore[arg-type]
    assert model.encoded == [r.text for r in recs[10:20]]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again[:10], strict=True))
    model.encoded.clear()
    fresh = cat.VectorResolver(model, cache).resolve(recs[:20])  # type: ignore[arg-type]
    assert model.encoded == []  # all 20 from the persistent cache
    assert np.allclose(fresh[15][0], again[15][0])
    # a changed text is a different key: encoded again
    edited = records([{**catalogue_items()[0], "title": "coffee edited"}])
    cat.VectorResolver(model, cache).resolve(edited, known)  # type: ignore[arg-type]
    assert model.encoded == [edited[0].text]
    cache.close()


def test_encoder_key_changes_with_space_and_with_a_tuned_content_encoder():
    a, b = FakeModel(space="s1"), FakeModel(space="s2")
    tuned = FakeModel(space="s1", content_sha="c" * 64)
    keys = {cat.encoder_key(m) for m in (a, b, tuned)}  # type: ignore[arg-type]
    assert len(keys) == 3 and cat.encoder_key(a) == "s1"  # type: ignore[arg-type]


def test_training_vectors_are_used_by_item_id(tmp_path: Path):
    model = FakeModel()
    model.dir = tmp_path
    ids = ["i000", "i001"]
    vec = np.ones((2, model.text_dim), np.float32)
    np.savez(tmp_path / cat.TRAINING_VECTORS, item_ids=np.array(ids), text=vec, content=vec * 2)
    out = cat.VectorResolver(model, None).resolve(records()[:3])  # type: ignore[arg-type]
    assert model.encoded == [records()[2].text]
    assert np.array_equal(out[0][1], vec[0] * 2)


def test_catalogue_state_tracks_changes_for_a_swap_to_catch_up():
    state = cat.CatalogueState()
    recs = records()[:3]
    vec = (np.zeros(2), np.zeros(2))
    state.apply([(r, vec) for r in recs], [])
    seq = state.seq
    state.apply([(recs[0], vec)], ["i002"])
    assert sorted(state.changed_since(seq)) == ["i000", "i002"]
    assert "i002" not in state.records and len(state) == 2


def holder(models: dict[str, FakeModel], metrics: Metrics | None = None) -> ServingHolder:
    h = ServingHolder(
        None,
        InterestParams(k=3),
        EngineOptions(top_k=5),
        "cpu",
        0,
        None,  # type: ignore[arg-type]
        metrics or Metrics(),
    )

    def open_(version: str) -> FakeModel:
        m = models[version]
        if isinstance(m, Exception):
            raise m
        return m

    h._open = open_  # type: ignore[method-assign]
    return h


async def test_swap_reuses_vectors_keeps_popularity_and_changes_one_reference():
    v1, v2 = FakeModel("v0001"), FakeModel("v0002")
    metrics = Metrics()
    h = holder({"v0001": v1, "v0002": v2}, metrics)
    await h.load_initial("v0001")
    await h.apply_items(records(), [])
    old = h.recommender
    assert old is not None and len(old.bundle.store) == 40
    old.bundle.store.bump(old.bundle.store.row["i000"], 1.0, 5.0)
    result = await h.swap_to("v0002")
    assert result is not None and result.ok and not result.reencoded
    new = h.recommender
    assert new is not old and h.version == "v0002"
    assert v2.encoded == []  # same encoder: vectors reused, only item features recomputed
    assert new.bundle.store.pop[new.bundle.store.row["i000"]] == pytest.approx(
        old.bundle.store.pop[old.bundle.store.row["i000"]]
    )
    m = parse_counters(metrics.render().decode())
    assert m["streamrec_model_swaps_total"] == 1 and m['streamrec_model_info{version="v0002"}'] == 1
    assert 'streamrec_model_info{version="v0001"}' not in m


async def test_swap_to_a_new_encoder_re_encodes_the_catalogue():
    v1, v2 = FakeModel("v0001", space="s1"), FakeModel("v0002", space="s2")
    h = holder({"v0001": v1, "v0002": v2})
    await h.load_initial("v0001")
    await h.apply_items(records(), [])
    result = await h.swap_to("v0002")
    assert result is not None and result.ok and result.reencoded
    assert len(v2.encoded) == 40 and h.catalogue.key == "s2"


async def test_a_bad_version_is_refused_remembered_and_the_old_one_keeps_serving():
    metrics = Metrics()
    h = holder(
        {
            "v0001": FakeModel("v0001"),
            "v0002": ModelLoadError("sha256 mismatch"),  # type: ignore[dict-item]
            "v0003": FakeModel("v0003", nan=True),
        },
        metrics,
    )
    await h.load_initial("v0001")
    await h.apply_items(records(), [])
    for bad in ("v0002", "v0003"):
        result = await h.swap_to(bad)
        assert result is not None and not result.ok
        assert h.version == "v0001"
    assert "sha256" in h.refused["v0002"] and "not finite" in h.refused["v0003"]
    assert await h.swap_to("v0002") is None  # not retried on every poll
    assert (await h.swap_to("v0002", retry_refused=True)) is not None  # a new notice retries
    assert parse_counters(metrics.render().decode())["streamrec_model_refusals_total"] == 3


async def test_items_changed_during_a_swap_reach_the_new_store():
    v1, v2 = FakeModel("v0001"), FakeModel("v0002")
    h = holder({"v0001": v1, "v0002": v2})
    await h.load_initial("v0001")
    await h.apply_items(records()[:30], [])
    original = cat.build_store

    def slow_build(*args, **kwargs):  # type: ignore[no-untyped-def]
        import time

        time.sleep(0.3)  # the swap builds off-loop while the feed keeps applying items
        return original(*args, **kwargs)

    cat.build_store = slow_build  # type: ignore[assignment]
    try:
        swap = asyncio.create_task(h.swap_to("v0002"))
        await asyncio.sleep(0.1)
        await h.apply_items(records()[30:], ["i000"])
        await swap
    finally:
        cat.build_store = original  # type: ignore[assignment]
    store = h.recommender.bundle.store  # type: ignore[union-attr]
    assert h.version == "v0002" and len(store) == 39 and "i000" not in store and "i309" in store


def test_warm_up_refuses_non_finite_scores():
    from stream_app.core.engine import Bundle, Recommender

    for nan, ok in ((False, True), (True, False)):
        model = FakeModel(nan=nan)
        recs = records()
        store = cat.build_store(model, recs, cat.VectorResolver(model, None).resolve(recs))  # type: ignore[arg-type]
        rec = Recommender(Bundle(model, store), InterestParams(k=3), EngineOptions())  # type: ignore[arg-type]
        if ok:
            warm_up(rec)
            assert store.pop.sum() == 0  # warm-up events leave no popularity behind
        else:
            with pytest.raises(SwapRefused, match="not finite"):
                warm_up(rec)
