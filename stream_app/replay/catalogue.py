"""The replay catalogue and the model versions loaded over it.

``Catalogue`` is the item universe metrics are computed on: ids in sorted (string) order, as in
``stream_app.core.baselines`` (index = position), with each item's pretrained text vector
(intra-list diversity), categories and appearance time. ``LoadedModel`` is one registry version
with its item features over that catalogue; ``feed`` fills an ``ItemStore`` the way the
worker's catalogue stream does: an item enters the store when its ``ts`` has passed, so a
replayed recommendation never shows an item that did not exist yet.

Torch-free: the training catalogue's vectors come from the version's ``catalog_vectors.npz``
(``stream_app.core.vectors``) for items whose text is unchanged; any other item is encoded with
the version's ONNX encoder.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from schemas.items import CatalogueItem
from stream_app.core.catalogue import ItemStore, item_numeric
from stream_app.core.engine import Bundle
from stream_app.core.interests import InterestParams
from stream_app.core.scorer import Scorer
from stream_app.core.vectors import load_vectors, text_sha
from stream_app.registry import Registry
from stream_app.serving.model import ServingVersion, open_version

REPLAY_STATUSES = ("published", "ablation")
S = TypeVar("S", bound=Scorer)


@dataclass
class Catalogue:
    ids: list[str]
    index: dict[str, int]
    items: list[CatalogueItem | None]  # None: an id seen only in events (no catalogue entry)
    added_ts: np.ndarray  # [N] epoch seconds the item appears (-inf: from the start)
    text: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @classmethod
    def build(
        cls,
        items: Sequence[CatalogueItem],
        event_item_ids: Sequence[str],
        events_only: bool = False,
    ) -> Catalogue:
        """Catalogue over the item ids of the events (``events_only``, the LOO convention) or
        over every live item of the file plus any id seen in the events."""
        by_id = {it.item_id: it for it in items if not it.deleted}
        universe = set(event_item_ids) if events_only else set(by_id) | set(event_item_ids)
        ids = sorted(universe)
        found = [by_id.get(i) for i in ids]
        added = np.array(
            [
                it.ts.timestamp() if it is not None and it.ts is not None else -np.inf
                for it in found
            ],
            np.float64,
        )
        return cls(ids, {i: n for n, i in enumerate(ids)}, found, added)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def categories(self) -> list[tuple[str, ...]]:
        return [tuple(it.categories) if it is not None else () for it in self.items]

    @property
    def has_categories(self) -> bool:
        return any(it is not None and it.categories for it in self.items)

    def texts(self) -> list[str]:
        return [
            it.text() if it is not None else f"item {i}"
            for i, it in zip(self.ids, self.items, strict=True)
        ]

    def prices(self) -> list[float | None]:
        return [it.price if it is not None else None for it in self.items]


def interest_params(model: ServingVersion, fallback: InterestParams) -> InterestParams:
    """The state definition the version was trained with (its manifest), k = the model's k."""
    saved = model.manifest.engine.interests
    params = InterestParams(**saved.model_dump()) if saved is not None else fallback
    if params.k != model.k:
        params = InterestParams(**{**params.__dict__, "k": model.k})
    return params


@dataclass
class LoadedModel(Generic[S]):
    """One model version with its item vectors and features over the replay catalogue
    (``load_model``: a registry version served by ONNX Runtime)."""

    model: S
    params: InterestParams
    text: np.ndarray  # [N, Dt] pretrained text vectors (the interest space)
    feats: np.ndarray  # [N, F] item-tower features

    @property
    def version(self) -> str:
        return self.model.version

    def new_store(self) -> ItemStore:
        return ItemStore(self.model.text_dim, self.model.feat_dim, capacity=max(16, self.n))

    @property
    def n(self) -> int:
        return int(self.feats.shape[0])


def _vectors(model: ServingVersion, cat: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Training-catalogue vectors where the item text is unchanged (``text_sha``), the
    version's ONNX encoder for the rest, as the worker's catalogue does."""
    text = np.zeros((len(cat), model.text_dim), np.float32)
    content = np.zeros_like(text)
    have = np.zeros(len(cat), bool)
    texts = cat.texts()
    saved = load_vectors(Path(model.dir))
    if saved is not None:
        pos = {item: n for n, item in enumerate(saved.item_ids)}
        for i, item in enumerate(cat.ids):
            n = pos.get(item)
            if n is None or (
                saved.text_sha is not None and saved.text_sha[n] != text_sha(texts[i])
            ):
                continue
            text[i], content[i], have[i] = saved.text[n], saved.content[n], True
    missing = np.flatnonzero(~have)
    if missing.size:
        t, c = model.encode([texts[i] for i in missing])
        text[missing], content[missing] = t, c
    return text, content


def load_model(
    registry: Registry,
    version: str,
    cat: Catalogue,
    fallback: InterestParams,
    device: str = "auto",
    threads: int = 0,
) -> LoadedModel[ServingVersion]:
    model = open_version(
        registry, version, device=device, threads=threads, allow_status=REPLAY_STATUSES
    )
    text, content = _vectors(model, cat)
    feats = model.item_features(content, cat.ids, item_numeric(cat.prices()))
    return LoadedModel(model, interest_params(model, fallback), text, feats.astype(np.float32))


class Feed:
    """Puts catalogue items into a store as replay time passes their appearance ``ts``.

    Store rows follow the order items are added; ``rows_of`` maps catalogue index -> row."""

    def __init__(self, lm: LoadedModel, cat: Catalogue) -> None:
        self.lm, self.cat = lm, cat
        self.store = lm.new_store()
        self.bundle = Bundle(lm.model, self.store)
        self.order = np.argsort(cat.added_ts, kind="stable")
        self.sorted_ts = cat.added_ts[self.order].tolist()
        self.done = 0
        self.cats = cat.categories

    def advance(self, now: float) -> int:
        """Add every item with ``ts <= now`` not added yet; returns how many were added."""
        stop = bisect.bisect_right(self.sorted_ts, now)
        if stop <= self.done:
            return 0
        idx = self.order[self.done : stop]
        added = self.cat.added_ts[idx]
        self.store.upsert(
            [self.cat.ids[i] for i in idx],
            self.lm.text[idx],
            self.lm.feats[idx],
            [self.cats[i] for i in idx],
            np.where(np.isfinite(added), added, 0.0).tolist(),
        )
        n, self.done = stop - self.done, stop
        return n

    def add_all(self) -> None:
        self.advance(np.inf)
