"""Online hit rate and the automatic-rollback detector (pure; the agent feeds them).

Hit: the item of a user's event appears in the list published after that user's previous
event. The outcome belongs to the model version that produced that previous list, so right
after a swap the old version's last lists are still judged as the old version's. An event on
the same item as the user's previous event is no outcome (the newest item is never
recommended back: no model could hit it).

``RollbackDetector``: after a swap A -> B, once ``window`` outcomes of B's lists are in, B's
hit rate is compared with A's over A's last ``window`` outcomes; B is judged bad when its rate
is below (1 - ``drop``) x A's. One verdict per swap; no verdict without a baseline of at least
half a window (a worker that has just started) or with a zero baseline.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_app.worker.metrics import Metrics
    from stream_app.worker.processing import BatchResult

MIN_BASELINE_FRACTION = 0.5


class LastLists:
    """user -> (model version, item ids, item of the event) of the last list shown; LRU."""

    def __init__(self, max_users: int) -> None:
        self.max_users = max_users
        self._last: OrderedDict[str, tuple[str, tuple[str, ...], str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def outcome(
        self, user: str, item: str, version: str, shown: tuple[str, ...]
    ) -> tuple[str, bool] | None:
        """Record the list shown after this event; return (version of the previous list,
        hit) for this event, or None (no previous list, or a repeat of the previous item)."""
        prev = self._last.pop(user, None)
        self._last[user] = (version, shown, item)
        if len(self._last) > self.max_users:
            self._last.popitem(last=False)
        if prev is None or prev[2] == item:
            return None
        return prev[0], item in prev[1]


@dataclass(frozen=True)
class Verdict:
    version: str  # the version swapped in and judged
    previous: str  # the version it replaced (the baseline)
    before: float  # baseline hit rate (previous version)
    after: float  # hit rate of the judged version
    n_before: int
    n_after: int
    rollback: bool
    note: str
    judged: bool = True  # False: no verdict (baseline too small or zero)

    def describe(self) -> str:
        return (
            f"live hit rate {self.after:.4f} over {self.n_after} outcomes for {self.version} "
            f"vs {self.before:.4f} over {self.n_before} for {self.previous}: {self.note}"
        )


class RollbackDetector:
    def __init__(self, drop: float, window: int) -> None:
        self.drop, self.window = drop, window
        self.windows: dict[str, deque[bool]] = {}
        self.watch: tuple[str, str] | None = None  # (swapped-in version, previous)

    @property
    def enabled(self) -> bool:
        return self.drop > 0

    def swapped(self, previous: str, new: str) -> None:
        """Start judging ``new`` against ``previous`` (called after a swap)."""
        if not self.enabled:
            return
        self.windows = {v: w for v, w in self.windows.items() if v == previous}
        self.windows[new] = deque(maxlen=self.window)
        self.watch = (new, previous)

    def rate(self, version: str) -> tuple[float, int]:
        w = self.windows.get(version)
        if not w:
            return 0.0, 0
        return sum(w) / len(w), len(w)

    def record(self, version: str, hit: bool) -> Verdict | None:
        """One outcome of a list made by ``version``; a verdict when the watch completes."""
        if not self.enabled:
            return None
        w = self.windows.get(version)
        if w is None:
            if len(self.windows) >= 4:  # versions no longer watched or compared
                return None
            w = self.windows[version] = deque(maxlen=self.window)
        w.append(hit)
        if self.watch is None or version != self.watch[0] or len(w) < self.window:
            return None
        new, previous = self.watch
        self.watch = None
        after, n_after = self.rate(new)
        before, n_before = self.rate(previous)
        judged = False
        if n_before < self.window * MIN_BASELINE_FRACTION:
            bad, note = False, "baseline too small, no verdict"
        elif before <= 0:
            bad, note = False, "baseline hit rate is zero, no verdict"
        else:
            judged = True
            bad = after < before * (1 - self.drop)
            limit = f"{before * (1 - self.drop):.4f}"
            note = f"below {limit}: roll back" if bad else f"not below {limit}: keep"
        return Verdict(new, previous, before, after, n_before, n_after, bad, note, judged)


class OnlineQuality:
    """The agent's view: per batch, record each event's outcome (metrics by version) and feed
    the detector; returns a verdict when a watch completes."""

    def __init__(self, max_users: int, drop: float, window: int, metrics: Metrics) -> None:
        self.last = LastLists(max_users)
        self.detector = RollbackDetector(drop, window)
        self.metrics = metrics
        self.last_outcomes: dict[str, tuple[int, int]] = {}  # of the last batch observed

    def observe(self, result: BatchResult) -> Verdict | None:
        version, verdict = result.model_version, None
        counts: dict[str, list[int]] = {}
        for s in result.snapshots:
            recs = result.recs.get(s.index)
            if s.duplicate or recs is None:
                continue
            shown = tuple(r.item_id for r in recs)
            out = self.last.outcome(s.event.user_id, s.event.item_id, version, shown)
            if out is None:
                continue
            made_by, hit = out
            c = counts.setdefault(made_by, [0, 0])
            c[0] += 1
            c[1] += hit
            verdict = self.detector.record(made_by, hit) or verdict
        for made_by, (n, hits) in counts.items():
            self.metrics.online_evaluated.labels(made_by).inc(n)
            self.metrics.online_hits.labels(made_by).inc(hits)
        self.last_outcomes = {v: (n, hits) for v, (n, hits) in counts.items()}
        return verdict
