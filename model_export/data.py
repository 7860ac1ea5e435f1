"""Training examples, built by replaying the log through the worker's own ``update_interests``.

An example is one interaction (consecutive repeats of an item merged, as in the LOO
protocol): the user's state just *before* its first event (interest slots, strengths, the
last L items), the positive item, and labels (click = 1 for every interaction's item,
purchase = 1 when any merged event was a purchase). Negatives are sampled per batch in
``train.py``.

Splits: ``loo`` — each user's last interaction is test, the one before validation, training
sees only what precedes them (``stream_app.core.splits``); ``time`` — the last slices of time
are validation and test. Eval examples carry the user's history (items to mask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.manifest import TrainingData
from stream_app.core.catalogue import NUM_FEATURES
from stream_app.core.covisit import CoVisit
from stream_app.core.interests import (
    InterestParams,
    InterestState,
    lite,
    new_state,
    update_interests,
)
from stream_app.core.splits import loo_split, user_sequences


@dataclass
class ItemSpace:
    """The training catalogue: index i+1 <-> item_ids[i]; row 0 = unknown/padding."""

    item_ids: list[str]
    text_vecs: np.ndarray  # [M+1, Dt] pretrained-encoder vectors (the interest space)
    content_vecs: np.ndarray  # [M+1, Dt] item-tower input (== text_vecs unless tuned)
    categories: list[list[str]] = field(default_factory=list)
    num: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_FEATURES), np.float32))
    texts: list[str] = field(default_factory=list)  # item_ids[i]'s text (keys vector reuse)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        """``num`` [M+1, NUM_FEATURES] item numeric features (price); zeros when not given."""
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        if self.num.shape[0] == 0:
            self.num = np.zeros((self.n + 1, NUM_FEATURES), np.float32)

    @property
    def n(self) -> int:
        return len(self.item_ids)


@dataclass
class Examples:
    slots: np.ndarray  # [E, K, Dt] float16
    strengths: np.ndarray  # [E, K] float32
    recent: np.ndarray  # [E, L] int32 item index, newest first, 0 = padding
    target: np.ndarray  # [E] int32 item index
    purchase: np.ndarray  # [E] uint8
    user: np.ndarray  # [E] int32
    ts: np.ndarray  # [E] float64 epoch seconds
    history: list[np.ndarray] | None = None  # per example: item indices seen before it
    # aligned with ``recent`` (newest first; 0 for padding): 0 click, 1 purchase; and hours
    # before the newest recent event (what the serving side builds from the same state)
    recent_kind: np.ndarray | None = None  # [E, L] int8
    recent_age: np.ndarray | None = None  # [E, L] float32

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def subset(self, idx: np.ndarray) -> Examples:
        hist = [self.history[i] for i in idx] if self.history is not None else None
        return Examples(
            self.slots[idx],
            self.strengths[idx],
            self.recent[idx],
            self.target[idx],
            self.purchase[idx],
            self.user[idx],
            self.ts[idx],
            hist,
            self.recent_kind[idx] if self.recent_kind is not None else None,
            self.recent_age[idx] if self.recent_age is not None else None,
        )


class _Builder:
    def __init__(self, k: int, dim: int, recent_len: int, with_history: bool) -> None:
        self.k, self.dim, self.recent_len, self.with_history = k, dim, recent_len, with_history
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self,
        state: InterestState,
        index: dict[str, int],
        target: int,
        purchase: bool,
        user: int,
        ts: float,
        history: set[int],
    ) -> None:
        rec = [index.get(i, 0) for i in reversed(state.recent_items[-self.recent_len :])]
        kinds = list(reversed(state.recent_kind[-self.recent_len :]))
        times = state.recent_ts[-self.recent_len :]
        newest = times[-1] if times else 0.0
        ages = [max(0.0, (newest - t) / 3600.0) for t in reversed(times)]
        hist = np.fromiter(sorted(history), np.int32) if self.with_history else None
        self.rows.append(
            (
                state.slots.astype(np.float16),
                state.strength.copy(),
                rec,
                target,
                purchase,
                user,
                ts,
                hist,
                kinds,
                ages,
            )
        )

    def build(self) -> Examples:
        e = len(self.rows)
        recent = np.zeros((e, self.recent_len), np.int32)
        kind = np.zeros((e, self.recent_len), np.int8)
        age = np.zeros((e, self.recent_len), np.float32)
        for i, row in enumerate(self.rows):
            recent[i, : len(row[2])] = row[2]
            kind[i, : len(row[8])] = row[8]
            age[i, : len(row[9])] = row[9]
        slots = (
            np.stack([r[0] for r in self.rows])
            if e
            else np.zeros((0, self.k, self.dim), np.float16)
        )
        return Examples(
            slots=slots,
            strengths=np.array([r[1] for r in self.rows], np.float32).reshape(e, self.k),
            recent=recent,
            target=np.array([r[3] for r in self.rows], np.int32),
            purchase=np.array([r[4] for r in self.rows], np.uint8),
            user=np.array([r[5] for r in self.rows], np.int32),
            ts=np.array([r[6] for r in self.rows], np.float64),
            history=[r[7] for r in self.rows] if self.with_history else None,
            recent_kind=kind,
            recent_age=age,
        )


@dataclass
class SplitData:
    train: Examples
    valid: Examples
    test: Examples
    meta: TrainingData  # what the manifest records about the data


def interaction_roles(
    events: Sequence[Any], split: str, valid_frac: float = 0.1, test_frac: float = 0.1
) -> tuple[dict[int, tuple[str, bool]], dict[str, Any]]:
    """Map each interaction's first-event index -> (role, purchase); role is 'train' |
    'valid' | 'test'; purchase is True when any of its merged events was a purchase."""
    seqs = user_sequences(events)
    roles: dict[int, tuple[str, bool]] = {}
    meta: dict[str, Any] = {"split": split}
    if split == "loo":
        for us in loo_split(events).users.values():
            for it in us.train:
                roles[it.event_index] = ("train", it.purchase)
            for role, held in (("valid", us.valid), ("test", us.test)):
                if held is not None:
                    roles[held.event_index] = (role, held.purchase)
        meta["holdout"] = "each user's last interaction (test) and the one before (valid)"
    elif split == "time":
        ts = np.array([it.ts for seq in seqs.values() for it in seq])
        t_valid, t_test = np.quantile(ts, [1 - valid_frac - test_frac, 1 - test_frac])
        for seq in seqs.values():
            for it in seq:
                role = "train" if it.ts < t_valid else "valid" if it.ts < t_test else "test"
                roles[it.event_index] = (role, it.purchase)
        meta.update(valid_from=float(t_valid), test_from=float(t_test))
    else:
        msg = f"split: expected 'time' or 'loo', got {split!r}"
        raise ValueError(msg)
    return roles, meta


def build_examples(
    events: Sequence[Any],
    space: ItemSpace,
    params: InterestParams,
    recent_len: int,
    split: str = "time",
    space_id: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> SplitData:
    """Replay ``events`` (time-ordered) through update_interests; emit one example per
    interaction with the state before it. Events on items outside ``space`` are skipped."""
    roles, meta = interaction_roles(events, split)
    dim = space.text_vecs.shape[1]
    builders = {
        r: _Builder(params.k, dim, recent_len, with_history=r != "train")
        for r in ("train", "valid", "test")
    }
    states: dict[str, InterestState] = {}
    history: dict[str, set[int]] = {}
    users: dict[str, int] = {}
    skipped = 0
    for n, ev in enumerate(events):
        item = space.index.get(ev.item_id)
        if item is None:
            skipped += 1
            continue
        uid = users.setdefault(ev.user_id, len(users))
        state = states.get(ev.user_id) or new_state(params.k, dim, space_id)
        seen = history.setdefault(ev.user_id, set())
        if n in roles:
            role, purchase = roles[n]
            builders[role].add(state, space.index, item, purchase, uid, ev.ts.timestamp(), seen)
        states[ev.user_id] = update_interests(state, space.text_vecs[item], lite(ev), params)
        seen.add(item)
        if on_progress is not None and n % 5000 == 0:
            on_progress(n)
    ts_all = [ev.ts.timestamp() for ev in events]
    meta.update(
        events=len(events),
        skipped_unknown_items=skipped,
        users=len(users),
        window={"start": min(ts_all, default=0.0), "end": max(ts_all, default=0.0)},
    )
    train, valid, test = (builders[r].build() for r in ("train", "valid", "test"))
    data = TrainingData(
        **meta,
        # latest timestamp whose interaction was a training target (leakage checks use it)
        train_until=float(train.ts.max()) if len(train) else None,
        train_examples=len(train),
        valid_examples=len(valid),
        test_examples=len(test),
    )
    return SplitData(train, valid, test, data)


def popularity(examples: Examples, n_items: int) -> np.ndarray:
    """Interaction counts per item index over the given (training) examples."""
    return np.bincount(examples.target, minlength=n_items + 1).astype(np.float64)


def train_sequences(train: Examples) -> list[np.ndarray]:
    """Each user's training targets in time order (for co-occurrence tables)."""
    order = np.lexsort((train.ts, train.user))
    users, targets = train.user[order], train.target[order]
    cuts = np.flatnonzero(np.diff(users)) + 1
    return [np.asarray(s, np.int64) for s in np.split(targets, cuts)]


@dataclass
class CoVisitTables:
    """Co-visitation for training without leakage: a training example's feature comes from
    the table of the OTHER half of the users (out-of-fold), so its own (previous -> target)
    pair is never counted; evaluation and serving use the table of all training users."""

    full: CoVisit
    folds: tuple[CoVisit, CoVisit]

    @classmethod
    def build(cls, train: Examples, n_items: int) -> CoVisitTables:
        seqs = train_sequences(train)
        users = np.unique(train.user)
        fold_of = {int(u): int(u) % 2 for u in users}
        order = np.lexsort((train.ts, train.user))
        seq_users = [int(u) for u in np.unique(train.user[order])]
        parts: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        for u, seq in zip(seq_users, seqs, strict=True):
            parts[fold_of[u]].append(seq)
        return cls(
            CoVisit.fit(seqs, n_items),
            (CoVisit.fit(parts[0], n_items), CoVisit.fit(parts[1], n_items)),
        )

    def for_training(self, ex: Examples, idx: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """[B, N] out-of-fold scores for examples ``idx`` and candidate indices [B, N]."""
        recent = ex.recent[idx]
        other = 1 - (ex.user[idx] % 2)
        out = np.zeros(cand.shape, np.float32)
        for fold in (0, 1):
            rows = other == fold
            if rows.any():
                out[rows] = self.folds[fold].scores(recent[rows], cand[rows])
        return out
