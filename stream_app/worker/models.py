"""The serving holder: the current ``Recommender`` (model + item store of ONE version) and the
hot-swap protocol.

Swap protocol (the stream never pauses; the agent only ever reads ``holder.recommender``):

1. load the candidate version beside the serving one, off the event loop
   (``open_version`` checks every file against the manifest's sha256 and the graph contract);
2. snapshot the catalogue records; build the candidate's ``ItemStore``: reuse the live
   vectors when the encoder key (space + content encoder) is unchanged, else resolve them
   again (cache / the version's training vectors / the encoder); recompute item-tower
   features either way (the ranker's item tower is per version);
3. warm up: score a batch of users built from real catalogue items; any non-finite output
   refuses the version;
4. under the catalogue lock: replay item changes that arrived during 1-3, carry popularity
   over, then replace the ONE reference (``self.recommender``) — ranker and item vectors
   change together.

A version that fails any step is refused: logged, counted, remembered (not retried on every
poll; a new notice for it retries once), and the old version keeps serving.

A shadow version (``load_shadow``) goes through steps 1-4 the same way but lands in
``self.shadow`` instead: never served, its store kept up to date with the catalogue like the
serving one, scored by ``stream_app.worker.shadow`` until it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.settings import ServingSettings
from stream_app.core.engine import Bundle, Recommender
from stream_app.core.interests import CLICK, EventLite, InterestParams
from stream_app.registry import Registry
from stream_app.serving.model import ServingVersion, open_version
from stream_app.serving.sessions import ModelLoadError
from stream_app.worker import catalogue as cat
from stream_app.worker.metrics import Metrics

log = logging.getLogger("streamrec.models")
WARMUP_USERS = 8


class SwapRefused(RuntimeError):
    pass


class NotServing(RuntimeError):
    """Nothing is served yet: the first version is not loaded (``load_initial``)."""


@dataclass
class SwapResult:
    version: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    reencoded: bool = False


@dataclass
class _Built:
    """A version loaded, its store built and warmed up, not yet in place (steps 1-3)."""

    rec: Recommender
    resolver: cat.VectorResolver
    same_encoder: bool
    records: list[cat.ItemRecord]
    vecs: list[cat.Vec]
    known: dict[str, tuple[str, cat.Vec]] | None
    seq: int


class ServingHolder:
    """Owns the serving reference, the catalogue state and the lock that orders catalogue
    updates against the final step of a swap."""

    def __init__(
        self,
        registry: Registry,
        params: InterestParams,
        opts: ServingSettings,
        device: str,
        threads: int,
        cache: cat.VectorCache | None,
        metrics: Metrics,
    ) -> None:
        self.registry, self.params, self.opts = registry, params, opts
        self.device, self.threads = device, threads
        self.cache, self.metrics = cache, metrics
        self.catalogue = cat.CatalogueState()
        self.lock = asyncio.Lock()
        self.recommender: Recommender | None = None
        self.resolver: cat.VectorResolver | None = None
        self.refused: dict[str, str] = {}
        self.swapping: str | None = None
        self.shadow: Recommender | None = None
        self.shadow_resolver: cat.VectorResolver | None = None
        self.on_swap: list[Callable[[str, str], None]] = []  # (previous, new) after a swap

    @property
    def version(self) -> str | None:
        return self.recommender.bundle.model.version if self.recommender else None

    def serving(self) -> tuple[Recommender[ServingVersion], cat.VectorResolver]:
        """The served recommender and the vector resolver of its encoder."""
        if self.recommender is None or self.resolver is None:
            msg = "no model version is served yet (the worker is still starting)"
            raise NotServing(msg)
        return self.recommender, self.resolver

    # -- start -------------------------------------------------------------------------
    async def load_initial(self, version: str) -> None:
        """First model, empty store (the catalogue feed fills it). Raises ModelLoadError."""
        model = await asyncio.to_thread(self._open, version)
        self._check_compatible(model)
        self.resolver = await asyncio.to_thread(cat.VectorResolver, model, self.cache)
        store = cat.build_store(model, [], [])
        self.catalogue.key = self.resolver.key
        self.recommender = Recommender(
            Bundle(model, store, self.opts.ann_threads), self.params, self.opts
        )
        self.metrics.model_loaded(version, None, model.providers[0])
        log.info("serving model %s (providers %s, space %s)", version, model.providers, model.space)

    def _open(self, version: str, allow_status: tuple[str, ...] = ("published",)) -> ServingVersion:
        """``version`` loaded; with the served version's encoder sessions when its encoder
        files are the same (``ServingVersion._shared_encoders``)."""
        served = self.recommender.bundle.model if self.recommender is not None else None
        return open_version(
            self.registry, version, self.device, self.threads, allow_status, reuse=served
        )

    def _check_compatible(self, model: ServingVersion) -> None:
        if model.k != self.params.k:
            msg = (
                f"interests.k: model {model.version} was trained with k={model.k}, "
                f"the worker runs with k={self.params.k}"
            )
            raise ModelLoadError(msg)

    # -- catalogue updates (called by the catalogue feed) -------------------------------
    async def apply_items(self, records: list[cat.ItemRecord], deletes: list[str]) -> int:
        """Encode (off-loop) and insert/replace items, remove deleted ones. Returns how many
        texts went through the encoder."""
        async with self.lock:
            rec, resolver = self.serving()
            before = resolver.encoded
            vecs = await asyncio.to_thread(resolver.resolve, records, self.catalogue.vectors)
            store = rec.bundle.store
            if records:
                feats = await asyncio.to_thread(cat.item_features, rec.bundle.model, records, vecs)
                text = np.stack([v[0] for v in vecs]).astype(np.float32)
                store.upsert(
                    [r.item_id for r in records],
                    text,
                    feats,
                    [r.categories for r in records],
                    [r.added_ts for r in records],
                )
            for item_id in deletes:
                store.delete(item_id)
            retriever = rec.bundle.retriever
            if await asyncio.to_thread(retriever.reindex):  # crossed the ANN size, off-loop
                log.info("retrieval over %d items: %s index", len(store), retriever.kind)
            self.catalogue.apply(zip(records, vecs, strict=True), deletes)
            self.metrics.catalogue_size.set(len(store))
            if self.shadow is not None:
                await self._apply_shadow(records, vecs, deletes)
            return resolver.encoded - before

    async def _apply_shadow(
        self, records: list[cat.ItemRecord], vecs: list[cat.Vec], deletes: list[str]
    ) -> None:
        shadow, resolver = self.shadow, self.shadow_resolver
        if shadow is None or resolver is None:  # dropped while this batch was encoded
            return
        if records:
            if resolver.key != self.catalogue.key:
                vecs = await asyncio.to_thread(resolver.resolve, records, None)
            await asyncio.to_thread(
                cat.upsert, shadow.bundle.store, shadow.bundle.model, records, vecs
            )
        for item_id in deletes:
            shadow.bundle.store.delete(item_id)

    # -- swap ----------------------------------------------------------------------------
    async def swap_to(self, version: str, retry_refused: bool = False) -> SwapResult | None:
        """Load, build, warm up and swap in ``version``; None when there is nothing to do."""
        if version == self.version or version == self.swapping:
            return None
        if version in self.refused and not retry_refused:
            return None
        self.swapping = version
        t0 = time.perf_counter()
        try:
            result = await self._swap(version, t0)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the version
            reason = str(exc)
            self.refused[version] = reason
            self.metrics.refusals.inc()
            log.error("model %s refused, %s keeps serving: %s", version, self.version, reason)
            return SwapResult(version, False, reason, time.perf_counter() - t0)
        finally:
            self.swapping = None
        self.refused.pop(version, None)
        return result

    async def _build(self, version: str, allow_status: tuple[str, ...] = ("published",)) -> _Built:
        """Steps 1-3, off the event loop: load, build the store, warm up."""
        model = await asyncio.to_thread(self._open, version, allow_status)
        self._check_compatible(model)
        resolver = await asyncio.to_thread(cat.VectorResolver, model, self.cache)
        same_encoder = resolver.key == self.catalogue.key
        seq = self.catalogue.seq
        records = list(self.catalogue.records.values())
        known = dict(self.catalogue.vectors) if same_encoder else None
        vecs = await asyncio.to_thread(resolver.resolve, records, known)
        store = await asyncio.to_thread(cat.build_store, model, records, vecs)
        candidate = Recommender(Bundle(model, store, self.opts.ann_threads), self.params, self.opts)
        await asyncio.to_thread(candidate.bundle.retriever.reindex)  # ANN for a big catalogue
        await asyncio.to_thread(warm_up, candidate)
        return _Built(candidate, resolver, same_encoder, records, vecs, known, seq)

    def _catch_up(self, b: _Built) -> tuple[list[cat.ItemRecord], list[cat.Vec]]:
        """Under the lock: apply the item changes that arrived while ``b`` was being built,
        carry popularity over. Returns the late records and their vectors."""
        old, _ = self.serving()
        store, model = b.rec.bundle.store, b.rec.bundle.model
        changed = self.catalogue.changed_since(b.seq)
        live = [self.catalogue.records[i] for i in changed if i in self.catalogue.records]
        gone = [i for i in changed if i not in self.catalogue.records]
        late_vecs = b.resolver.resolve(live, b.known) if live else []
        cat.upsert(store, model, live, late_vecs)
        for item_id in gone:
            store.delete(item_id)
        cat.copy_popularity(old.bundle.store, store)
        return live, late_vecs

    async def _swap(self, version: str, t0: float) -> SwapResult:
        old, _ = self.serving()
        b = await self._build(version)
        candidate, resolver, same_encoder = b.rec, b.resolver, b.same_encoder
        store = candidate.bundle.store
        async with self.lock:
            live, late_vecs = self._catch_up(b)
            if not same_encoder:
                self.catalogue.key = resolver.key
                self.catalogue.vectors = {
                    r.item_id: (r.text_sha, v)
                    for r, v in zip(b.records, b.vecs, strict=True)
                    if r.item_id in self.catalogue.records
                }
                for r, v in zip(live, late_vecs, strict=True):
                    self.catalogue.vectors[r.item_id] = (r.text_sha, v)
            self.recommender, self.resolver = candidate, resolver  # the one reference change
        previous = old.bundle.model.version
        seconds = time.perf_counter() - t0
        self.metrics.model_loaded(version, previous, candidate.bundle.model.providers[0])
        log.info(
            "model swap %s -> %s in %.2fs (%d items, %s)",
            previous,
            version,
            seconds,
            len(store),
            "re-encoded" if not same_encoder else "vectors reused",
        )
        for listener in self.on_swap:
            listener(previous, version)
        return SwapResult(version, True, "", seconds, not same_encoder)

    # -- shadow --------------------------------------------------------------------------
    async def load_shadow(self, version: str) -> Recommender:
        """Load ``version`` beside the served one, never served (status "shadow" or
        "published"); replaces any shadow already loaded. Raises on any failure."""
        b = await self._build(version, ("shadow", "published"))
        async with self.lock:
            self._catch_up(b)
            self.shadow, self.shadow_resolver = b.rec, b.resolver
        log.info(
            "shadow model %s loaded beside %s (%d items)",
            version,
            self.version,
            len(b.rec.bundle.store),
        )
        return b.rec

    def drop_shadow(self) -> None:
        self.shadow = self.shadow_resolver = None


def warm_up(rec: Recommender, users: int = WARMUP_USERS) -> None:
    """Score a small batch of synthetic users made of real catalogue items; raise SwapRefused
    when any output is not finite or no item can be recommended at all."""
    store = rec.bundle.store
    live = [i for i in store.ids if i is not None]
    model = rec.bundle.model
    rng = np.random.default_rng(0)
    k, n_rec = model.k, model.recent_len
    recent = rng.standard_normal((users, n_rec, model.feat_dim)).astype(np.float32)
    mask = np.ones((users, n_rec), np.float32)
    tower = model.tower(
        recent, mask, np.zeros((users, n_rec), np.int64), np.zeros((users, n_rec), np.float32)
    )
    if tower is not None:
        for name in ("interests", "weights", "attn", "buy_prior"):
            value = getattr(tower, name)
            if value is not None and not np.isfinite(value).all():
                msg = f"warm-up: user tower output {name} is not finite"
                raise SwapRefused(msg)
        slots, strengths, buy_prior = tower.interests, tower.weights, tower.buy_prior
    else:
        slots = rng.standard_normal((users, k, model.text_dim)).astype(np.float32)
        strengths = np.ones((users, k), np.float32)
        buy_prior = None
    out = model.score(
        slots,
        strengths,
        recent,
        mask,
        store.feats[: max(1, min(store.size, 50))][None].repeat(users, 0),
        buy_prior=buy_prior,
    )
    for name in ("p_click", "p_purchase", "attn"):
        if not np.isfinite(getattr(out, name)).all():
            msg = f"warm-up: ranker output {name} is not finite"
            raise SwapRefused(msg)
    if not live:
        return
    states = []
    for u in range(users):
        s = rec.new_state()
        for n, item in enumerate(rng.choice(live, size=min(3, len(live)), replace=False)):
            s = rec.apply(s, EventLite(f"warmup-{u}-{n}", str(item), 1.0 + n, CLICK))
        states.append(s)
    # rec.apply bumped popularity of warm-up items: undo on this private candidate store
    store.pop[:] = 0.0
    lists = rec.recommend(states, 10.0)
    # one full batch too, off the event loop: ONNX Runtime's arenas and numpy's buffers grow
    # to a full batch here, not in the first full batch served (2-2.5x a steady one)
    full = [states[n % len(states)] for n in range(max(rec.opts.batch_size, len(states)))]
    rec.recommend(full, 10.0)
    for recs in lists:
        for r in recs:
            if not all(np.isfinite(x) for x in (r.score, r.p_click, r.p_purchase)):
                msg = f"warm-up: non-finite score for item {r.item_id}"
                raise SwapRefused(msg)
    if not any(lists):
        msg = "warm-up: no recommendation produced for any warm-up user"
        raise SwapRefused(msg)


def describe(holder: ServingHolder) -> dict[str, Any]:
    rec = holder.recommender
    return {
        "model_version": holder.version,
        "providers": rec.bundle.model.providers if rec else None,
        "catalogue_items": len(rec.bundle.store) if rec else 0,
        "retrieval": rec.bundle.retriever.kind if rec else None,
        "refused": dict(holder.refused),
        "swapping": holder.swapping,
        "shadow": holder.shadow.bundle.model.version if holder.shadow else None,
    }
