"""The stream protocol with the fine-tuning side job in the loop (``--finetune-every N``).

Every ``N`` scored events the main engine's version gets a fine-tuning round, exactly the
side job's (``model_export.finetune.rounds.run_round``, injected by the CLI so that torch loads
only when asked): warm start from the version being served, trained on every event before the
chunk about to be scored (time split inside the round, the job's gate against the serving
version on the round's held-out slice). A round that passes the gate is swapped in between two
chunks, as a worker hot-swaps: every user's state and the catalogue's popularity carry over,
only the model (item features, tower, heads) changes. A refused round changes nothing.

The rounds publish into a scratch registry holding a copy of the replayed version, never into
the user's registry. Item co-occurrence refits on the streamed events every 1,000 or so; this is
what lets the model be compared with it on the same footing.
"""

from __future__ import annotations

import bisect
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.reports import RoundResult
from schemas.settings import ServingSettings, Settings
from stream_app.core.hooks import Hooks
from stream_app.registry import Registry
from stream_app.replay.catalogue import Catalogue, Feed, LoadedModel
from stream_app.replay.systems import CapturingRecommender, EngineStream, Outcome, ReplayEvent

# (round settings, registry, catalogue items, events, round id, hooks) -> the round's outcome
RoundTrainer = Callable[[Settings, Registry, list[Any], list[Any], str, Hooks], RoundResult]


@dataclass
class RoundLog:
    """One round as the replay saw it."""

    at_scored: int  # scored events before the round
    events: int  # events it trained on
    decision: str
    reason: str
    version: str | None
    seconds: float


@dataclass
class Refresher:
    """Runs the rounds for one replay: a scratch registry seeded with ``version``."""

    settings: Settings
    source: Registry
    version: str
    items: list[Any]
    events: list[Any]  # raw events, any order (a round takes those before its time)
    load: Callable[[Registry, str], LoadedModel]
    train: RoundTrainer
    hooks: Hooks = field(default_factory=Hooks)
    log: list[RoundLog] = field(default_factory=list)

    def __post_init__(self) -> None:
        order = sorted(range(len(self.events)), key=lambda i: self.events[i].ts)
        self._sorted = [self.events[i] for i in order]  # time order, ties in file order
        self._ts = [e.ts.timestamp() for e in self._sorted]
        self._dir = Path(tempfile.mkdtemp(prefix="streamrec-replay-rounds-"))
        self.registry = Registry(self._dir)
        self.registry.import_version(self.source.path(self.version))
        opts = self.settings.finetune
        self.round_settings = self.settings.model_copy(
            update={"training": opts.round_training(self.settings.training)}
        )

    def __call__(self, now: float, at_scored: int) -> LoadedModel | None:
        """A round on the events before ``now``; the new version loaded when it passed."""
        before = self._sorted[: bisect.bisect_left(self._ts, now)]
        t0 = time.perf_counter()
        self.hooks.stage(f"fine-tuning round on {len(before)} events (after {at_scored} scored)")
        res = self.train(
            self.round_settings, self.registry, self.items, before, f"replay-{now:.3f}", self.hooks
        )
        self.log.append(
            RoundLog(
                at_scored,
                len(before),
                res.decision,
                res.reason,
                res.version,
                round(time.perf_counter() - t0, 1),
            )
        )
        if res.decision != "published" or res.version is None:
            return None
        return self.load(self.registry, res.version)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def counts(self) -> dict[str, Any]:
        published = [r for r in self.log if r.decision == "published"]
        return {
            "finetune_rounds": len(self.log),
            "finetune_published": len(published),
            "finetune_versions": ",".join(r.version or "-" for r in published) or "-",
        }


class RefreshingStream(EngineStream):
    """``EngineStream`` whose version is replaced by ``refresh`` every ``every`` scored events
    (checked at chunk starts, so a swap never splits a chunk)."""

    def __init__(
        self,
        feed: Feed,
        cat: Catalogue,
        variants: dict[str, ServingSettings],
        refresh: Callable[[float, int], LoadedModel | None],
        every: int,
    ) -> None:
        super().__init__(feed, cat, variants)
        self.refresh, self.every = refresh, every
        self.scored = self.last_round = 0
        self.swaps = 0

    def step(
        self, evs: list[ReplayEvent], now: float, scored: list[bool]
    ) -> dict[str, list[Outcome | None]]:
        if self.scored - self.last_round >= self.every:
            self.last_round = self.scored
            lm = self.refresh(now, self.scored)
            if lm is not None:
                self.swap(lm, now)
        self.scored += sum(scored)
        return super().step(evs, now, scored)

    def swap(self, lm: LoadedModel, now: float) -> None:
        """Serve ``lm`` from now on: a fresh feed at the same catalogue time, the popularity
        counts carried over (same items in the same rows), the users' states kept."""
        self.feed.advance(now)  # both feeds at the same catalogue time
        old = self.feed.store
        feed = Feed(lm, self.cat)
        feed.advance(now)
        new = feed.store
        if new.ids[: new.size] != old.ids[: old.size]:  # same order of appearance: same rows
            msg = "replay swap: the new feed's rows differ from the old one's"
            raise RuntimeError(msg)
        new.pop[: old.size] = old.pop[: old.size]
        new.pop_ref = old.pop_ref
        self.feed = feed
        self.rec = CapturingRecommender(feed.bundle, lm.params, self.variants[self.names[0]])
        self.swaps += 1
