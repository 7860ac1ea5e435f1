"""Baselines in the ``stream`` protocol, answering through the same interface as
``systems.EngineStream`` (``warm`` then ``step`` per chunk) with the engine's exclusions: a
user's purchased items and the item they just interacted with are never listed.

- ``pop``: time-decayed popularity (``core.baselines.DecayedPopularity``) updated as events
  stream; the list for an event uses popularity as of the chunk start (never later events).
- ``cooc``: item co-occurrence (item-kNN, ``core.baselines.CoOccurrence``) fitted on the
  warm-up part and refitted every ``refit_every`` events on everything seen so far; scores
  the user's last items; ties (no neighbours) fall back to decayed popularity.

Both rank the whole available catalogue, so their click AUC is against every other item.
"""

from __future__ import annotations

import math

import numpy as np

from stream_app.core.baselines import CoOccurrence, DecayedPopularity
from stream_app.replay.catalogue import Catalogue
from stream_app.replay.results import share_below
from stream_app.replay.systems import Outcome, ReplayEvent

POP_HALF_LIFE_S = 3 * 24 * 3600.0  # the engine's ItemStore default (exploration popularity)


class _History:
    """Per-user exclusions and recent items, updated after each event is scored."""

    def __init__(self, n_recent: int = 50) -> None:
        self.n_recent = n_recent
        self.items: dict[str, list[int]] = {}
        self.purchased: dict[str, set[int]] = {}

    def observe(self, ev: ReplayEvent) -> None:
        if ev.item < 0:
            return
        seq = self.items.setdefault(ev.user, [])
        if not seq or seq[-1] != ev.item:
            seq.append(ev.item)
            del seq[: -self.n_recent]
        if ev.purchase:
            self.purchased.setdefault(ev.user, set()).add(ev.item)

    def exclude(self, user: str) -> set[int]:
        seq = self.items.get(user)
        excl = set(self.purchased.get(user, ()))
        if seq:
            excl.add(seq[-1])
        return excl


class _ScoringBaseline:
    name = "baseline"

    def __init__(self, cat: Catalogue, n_list: int, half_life_s: float = POP_HALF_LIFE_S) -> None:
        self.cat, self.n_list = cat, n_list
        self.pop = DecayedPopularity(half_life_s, len(cat))
        self.history = _History()

    def observe(self, ev: ReplayEvent) -> None:
        if ev.item >= 0:
            self.pop.update(ev.item, ev.lite.ts)
        self.history.observe(ev)

    def warm(self, evs: list[ReplayEvent]) -> None:
        for ev in evs:
            self.observe(ev)

    def scores(self, ev: ReplayEvent, pop: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def step(
        self, evs: list[ReplayEvent], now: float, scored: list[bool]
    ) -> dict[str, list[Outcome | None]]:
        available = self.cat.added_ts <= now
        pop = self.pop.scores(now, len(self.cat))
        out: list[Outcome | None] = [None] * len(evs)
        for i, ev in enumerate(evs):
            if scored[i] and ev.item >= 0:
                s = np.where(available, self.scores(ev, pop), -np.inf)
                excl = self.history.exclude(ev.user)
                out[i] = self._outcome(s, excl, ev)
            self.observe(ev)
        return {self.name: out}

    def _outcome(self, s: np.ndarray, excl: set[int], ev: ReplayEvent) -> Outcome:
        """Top-N of ``s`` minus the exclusions; AUC of the target's own score (even when it is
        excluded, as the engine's target is scored even when not retrieved) vs the listable."""
        target = float(s[ev.item])
        if excl:
            s[list(excl)] = -np.inf
        n = min(self.n_list, int(np.isfinite(s).sum()))
        items = np.zeros(0, np.int64)
        if n > 0:
            top = np.argpartition(-s, n - 1)[:n]
            items = top[np.lexsort((top, -s[top]))]  # ties: lower catalogue index first
        hit = np.flatnonzero(items == ev.item)
        listable = np.isfinite(s)
        listable[ev.item] = False
        ok = math.isfinite(target)
        return Outcome(
            items,
            int(hit[0]) if hit.size else -1,
            share_below(s[listable], target) if ok else math.nan,
            target if ok else math.nan,
        )


class PopStream(_ScoringBaseline):
    name = "pop"

    def scores(self, ev: ReplayEvent, pop: np.ndarray) -> np.ndarray:
        return pop.copy()


class CoocStream(_ScoringBaseline):
    name = "cooc"

    def __init__(
        self,
        cat: Catalogue,
        n_list: int,
        window: int = 5,
        n_recent: int = 5,
        refit_every: int | None = None,
    ) -> None:
        super().__init__(cat, n_list)
        self.window, self.n_recent = window, n_recent
        self.refit_every = refit_every
        self.seqs: dict[str, list[int]] = {}
        self.model = CoOccurrence(len(cat), window)
        self.since_fit = 0
        self.fits = 0

    def observe(self, ev: ReplayEvent) -> None:
        super().observe(ev)
        if ev.item >= 0:
            seq = self.seqs.setdefault(ev.user, [])
            if not seq or seq[-1] != ev.item:
                seq.append(ev.item)
        self.since_fit += 1

    def fit(self) -> None:
        self.model = CoOccurrence(len(self.cat), self.window).fit(self.seqs.values())
        self.since_fit = 0
        self.fits += 1

    def warm(self, evs: list[ReplayEvent]) -> None:
        super().warm(evs)
        self.fit()

    def step(
        self, evs: list[ReplayEvent], now: float, scored: list[bool]
    ) -> dict[str, list[Outcome | None]]:
        if self.refit_every and self.since_fit >= self.refit_every:
            self.fit()
        return super().step(evs, now, scored)

    def scores(self, ev: ReplayEvent, pop: np.ndarray) -> np.ndarray:
        hist = self.seqs.get(ev.user, [])
        top = float(pop.max()) if pop.size else 0.0
        tie = pop / top * 1e-6 if top > 0 else 0.0
        return self.model.scores(hist, n_recent=self.n_recent) + tie
