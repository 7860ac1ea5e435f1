"""The worker's catalogue: item records from the ``items`` topic, their encoder vectors (with a
persistent cache), and building the serving ``ItemStore`` for one model version.

Vectors come, cheapest first, from: the in-memory vector set of the serving encoder, the
RocksDB vector cache in ``data_dir`` (key = encoder key + sha256 of the item text), the
model version's training catalogue (``catalog_vectors.npz``: matched by item id AND the sha256
of the text it was computed from, so an item edited after training is encoded again), and
only then the encoder ONNX (batched). The encoder key is the model's ``space`` (the pretrained
encoder's hash) plus the content encoder's sha256 when the version tuned its own.

Versions written before ``text_sha`` was stored match by item id alone (logged once per
version): an item edited after such a training keeps its training-time vector until it is
edited again or the next version is trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.items import CatalogueItem
from schemas.onnx_spec import ENCODER
from stream_app.core.catalogue import ItemStore, item_numeric
from stream_app.core.vectors import VECTORS_FILE, load_vectors, text_sha
from stream_app.serving.model import ServingVersion

log = logging.getLogger("streamrec.catalogue")
TRAINING_VECTORS = VECTORS_FILE
ENCODE_CHUNK = 64


@dataclass(frozen=True)
class ItemRecord:
    """What the worker keeps of a catalogue item (text kept for re-encoding on swaps)."""

    item_id: str
    text: str
    text_sha: str
    price: float | None
    categories: tuple[str, ...]
    added_ts: float

    @classmethod
    def from_item(cls, item: CatalogueItem, arrival_ts: float) -> ItemRecord:
        text = item.text()
        return cls(
            item.item_id,
            text,
            text_sha(text),
            item.price,
            tuple(item.categories),
            item.ts.timestamp() if item.ts is not None else arrival_ts,
        )


def encoder_key(model: ServingVersion) -> str:
    """Identity of the (text vector, content vector) pair a model computes for a text."""
    content = model.manifest.encoder.content_encoder
    if content == ENCODER.file:
        return model.space
    entry = model.manifest.files.get(content)
    sha = entry.sha256 if entry is not None else content
    return f"{model.space}+{sha[:16]}"


Vec = tuple[np.ndarray, np.ndarray]  # (text vector, content vector)


class VectorCache:
    """Persistent (encoder key, text sha) -> vectors, in a rocksdict DB under ``data_dir``."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=Options(raw_mode=True))

    @staticmethod
    def _key(enc: str, sha: str) -> bytes:
        return f"{enc}|{sha}".encode()

    def get_many(self, enc: str, shas: list[str], dim: int) -> list[Vec | None]:
        out: list[Vec | None] = []
        for sha in shas:
            raw = self.db.get(self._key(enc, sha))
            if raw is None or len(raw) != 8 * dim:
                out.append(None)
                continue
            both = np.frombuffer(raw, np.float32)
            out.append((both[:dim].copy(), both[dim:].copy()))
        return out

    def put_many(self, enc: str, shas: list[str], vecs: list[Vec]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for sha, (t, c) in zip(shas, vecs, strict=True):
            batch.put(self._key(enc, sha), np.concatenate([t, c]).astype(np.float32).tobytes())
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()


def training_vectors(model: ServingVersion) -> dict[str, tuple[str | None, Vec]]:
    """The version's training catalogue vectors: item id -> (text sha or None, vectors);
    {} when the file is absent."""
    vecs = load_vectors(model.dir)
    if vecs is None:
        return {}
    if vecs.text_sha is None:
        log.info("model %s: training vectors carry no text hashes; matched by item id only",
                 model.version)  # fmt: skip
    return {item: (sha, (t, c)) for item, (sha, t, c) in vecs.by_id().items()}


class VectorResolver:
    """Vectors for item records under one model's encoder (thread-safe to call off-loop:
    it only reads the model and the caches it owns)."""

    def __init__(
        self, model: ServingVersion, cache: VectorCache | None, use_training: bool = True
    ) -> None:
        self.model, self.cache = model, cache
        self.key = encoder_key(model)
        self.training = training_vectors(model) if use_training else {}
        self.encoded = 0  # texts run through the encoder (metrics)

    def resolve(
        self,
        records: list[ItemRecord],
        known: dict[str, tuple[str, Vec]] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Vec]:
        """One (text, content) pair per record. ``known``: id -> (text sha, vectors) already
        computed under this same encoder key (the live vector set)."""
        out: list[Vec | None] = [None] * len(records)
        missing: list[int] = []
        for i, rec in enumerate(records):
            hit = known.get(rec.item_id) if known else None
            if hit is not None and hit[0] == rec.text_sha:
                out[i] = hit[1]
            else:
                missing.append(i)
        if missing and self.cache is not None:
            cached = self.cache.get_many(
                self.key, [records[i].text_sha for i in missing], self.model.text_dim
            )
            missing = [i for i, v in zip(missing, cached, strict=True) if not _put(out, i, v)]
        fresh: list[int] = []
        for i in missing:
            trained = self.training.get(records[i].item_id)
            if trained is not None and trained[0] in (None, records[i].text_sha):
                out[i] = trained[1]
                fresh.append(i)
        missing = [i for i in missing if out[i] is None]
        for s in range(0, len(missing), ENCODE_CHUNK * 4):
            chunk = missing[s : s + ENCODE_CHUNK * 4]
            text, content = self.model.encode([records[i].text for i in chunk], ENCODE_CHUNK)
            for n, i in enumerate(chunk):
                out[i] = (text[n], content[n])
            fresh += chunk
            self.encoded += len(chunk)
            if on_progress is not None:
                on_progress(len(chunk))
        done = [v for v in out if v is not None]
        if len(done) != len(out):  # every missing record went through the encoder above
            lost = [records[i].item_id for i, v in enumerate(out) if v is None]
            msg = f"vectors: no vector resolved for items {lost[:5]}"
            raise RuntimeError(msg)
        if fresh and self.cache is not None:
            self.cache.put_many(
                self.key, [records[i].text_sha for i in fresh], [done[i] for i in fresh]
            )
        return done


def _put(out: list[Vec | None], i: int, v: Vec | None) -> bool:
    if v is None:
        return False
    out[i] = v
    return True


def item_features(
    model: ServingVersion, records: list[ItemRecord], vecs: list[Vec], chunk: int = 4096
) -> np.ndarray:
    """Item-tower features [N, F] for records (ids unknown to the version: text alone)."""
    feats = np.zeros((len(records), model.feat_dim), np.float32)
    for s in range(0, len(records), chunk):
        part = records[s : s + chunk]
        content = np.stack([v[1] for v in vecs[s : s + chunk]]).astype(np.float32)
        feats[s : s + len(part)] = model.item_features(
            content, [r.item_id for r in part], item_numeric([r.price for r in part])
        )
    return feats


def upsert(
    store: ItemStore, model: ServingVersion, records: list[ItemRecord], vecs: list[Vec]
) -> None:
    if not records:
        return
    feats = item_features(model, records, vecs)
    text = np.stack([v[0] for v in vecs]).astype(np.float32)
    store.upsert(
        [r.item_id for r in records],
        text,
        feats,
        [r.categories for r in records],
        [r.added_ts for r in records],
    )


def build_store(model: ServingVersion, records: list[ItemRecord], vecs: list[Vec]) -> ItemStore:
    store = ItemStore(model.text_dim, model.feat_dim, capacity=max(1024, len(records) + 256))
    upsert(store, model, records, vecs)
    return store


def copy_popularity(old: ItemStore, new: ItemStore) -> None:
    """Carry the decayed popularity over a model swap (same item ids, new rows)."""
    new.pop_ref, new.pop_half_life_s = old.pop_ref, old.pop_half_life_s
    ids = [i for i in old.row if i in new.row]
    if ids:
        new.pop[new.rows_for(ids)] = old.pop[old.rows_for(ids)]


class CatalogueState:
    """Item records by id, the live vector set (under ``key``) and a change log so a model
    swap built off-loop can catch up with changes that arrived meanwhile."""

    def __init__(self) -> None:
        self.records: dict[str, ItemRecord] = {}
        self.key: str | None = None
        self.vectors: dict[str, tuple[str, Vec]] = {}  # id -> (text sha, vectors)
        self.seq = 0
        self.changed_at: dict[str, int] = {}  # id -> seq of its latest change

    def __len__(self) -> int:
        return len(self.records)

    def apply(self, upserts: Iterable[tuple[ItemRecord, Vec]], deletes: Iterable[str]) -> None:
        for rec, vec in upserts:
            self.seq += 1
            self.records[rec.item_id] = rec
            self.vectors[rec.item_id] = (rec.text_sha, vec)
            self.changed_at[rec.item_id] = self.seq
        for item_id in deletes:
            self.seq += 1
            self.records.pop(item_id, None)
            self.vectors.pop(item_id, None)
            self.changed_at[item_id] = self.seq

    def changed_since(self, seq: int) -> list[str]:
        return [i for i, s in self.changed_at.items() if s > seq]
