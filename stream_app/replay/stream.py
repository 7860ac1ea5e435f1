"""The ``stream`` protocol: replay the log in time order; warm every system up on the first
``warmup_frac`` of it (by time: the cut is a timestamp, equal timestamps never straddle it);
then for every later event, score the list that was current for its user BEFORE the event
(state after the user's previous event) against the event's item, and only then apply it.

Batching: events are processed in chunks of consecutive events. Within a chunk each user's
events are applied one by one, and each event is scored against a snapshot of its user's
state taken just before it; the catalogue and the popularity used for the chunk's lists are
those of the chunk's first event (chunks are cut so that no item appears inside one). So no
list ever sees its event, anything after it, or an item that did not exist yet.

A user's first event has no current list (nothing was shown yet) and is not scored.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream_app.core.interests import lite
from stream_app.replay.catalogue import Catalogue
from stream_app.replay.results import SystemResults
from stream_app.replay.systems import EngineStream, Outcome, ReplayEvent

Progress = Callable[[int, int], None]


class StreamSystem(Protocol):
    def warm(self, evs: list[ReplayEvent]) -> None: ...

    def step(
        self, evs: list[ReplayEvent], now: float, scored: list[bool]
    ) -> dict[str, list[Outcome | None]]: ...


@dataclass
class StreamConfig:
    ks: tuple[int, ...] = (10, 20)
    warmup_frac: float = 0.8
    chunk: int = 256
    max_users: int | None = None
    sweep_lambdas: tuple[float, ...] = ()
    sweep_max: int = 2000
    seed: int = 0


@dataclass
class StreamRun:
    results: dict[str, SystemResults]
    sweep: dict[float, SystemResults] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    warm_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))


def replay_events(events: Sequence[Any], cat: Catalogue) -> list[ReplayEvent]:
    """Events in time order (equal timestamps keep file order) in replay form."""
    order = sorted(range(len(events)), key=lambda i: events[i].ts)
    out = []
    for i in order:
        e = events[i]
        out.append(
            ReplayEvent(
                lite(e), e.user_id, cat.index.get(e.item_id, -1), e.event_type == "purchase"
            )
        )
    return out


def warmup_cut(evs: Sequence[ReplayEvent], frac: float) -> int:
    """Index of the first scored event: the first with ts >= the ``frac`` quantile timestamp."""
    if not 0.0 <= frac < 1.0:
        msg = f"warmup_frac: expected a fraction in [0, 1), got {frac}"
        raise ValueError(msg)
    if not evs:
        return 0
    ts = [e.lite.ts for e in evs]
    t_cut = ts[min(int(len(ts) * frac), len(ts) - 1)]
    return bisect.bisect_left(ts, t_cut)


def chunk_bounds(
    ts: Sequence[float], start: int, size: int, appear_sorted: Sequence[float]
) -> list[tuple[int, int]]:
    """[lo, hi) chunks from ``start``: at most ``size`` events, and none contains an event at or
    after an item appearance time later than the chunk's first event."""
    out, lo, n = [], start, len(ts)
    while lo < n:
        hi = min(lo + size, n)
        nxt = bisect.bisect_right(appear_sorted, ts[lo])
        if nxt < len(appear_sorted):
            hi = min(hi, max(lo + 1, bisect.bisect_left(ts, appear_sorted[nxt], lo, hi)))
        out.append((lo, hi))
        lo = hi
    return out


def selected_users(evs: Sequence[ReplayEvent], cut: int, max_users: int | None) -> set[str] | None:
    if max_users is None:
        return None
    users = list(dict.fromkeys(e.user for e in evs[cut:]))
    return set(users[:max_users])


def run_stream(
    evs: list[ReplayEvent],
    cat: Catalogue,
    systems: list[StreamSystem],
    cfg: StreamConfig,
    on_progress: Progress | None = None,
) -> StreamRun:
    n_list = max(cfg.ks)
    cut = warmup_cut(evs, cfg.warmup_frac)
    t0 = time.perf_counter()
    for system in systems:
        system.warm(evs[:cut])
    t_warm = time.perf_counter() - t0
    history: dict[str, int] = {}
    last_item: dict[str, int] = {}
    warm_counts = np.zeros(len(cat), np.int64)
    for e in evs[:cut]:
        history[e.user] = history.get(e.user, 0) + 1
        last_item[e.user] = e.item
        if e.item >= 0:
            warm_counts[e.item] += 1
    chosen = selected_users(evs, cut, cfg.max_users)
    results: dict[str, SystemResults] = {}
    sweep: dict[float, SystemResults] = {
        lam: SystemResults(f"lambda={lam}", n_list) for lam in cfg.sweep_lambdas
    }
    rng = np.random.default_rng(cfg.seed)
    ts = [e.lite.ts for e in evs]
    appear = sorted(float(x) for x in cat.added_ts if np.isfinite(x))
    bounds = chunk_bounds(ts, cut, cfg.chunk, appear)
    n_scored_total = len(evs) - cut
    p_sweep = min(1.0, cfg.sweep_max / max(n_scored_total, 1))
    first_events = unknown = scored_n = purchases = repeats = 0
    t1 = time.perf_counter()
    for lo, hi in bounds:
        chunk = evs[lo:hi]
        now = chunk[0].lite.ts
        flags = []
        for e in chunk:
            ok = history.get(e.user, 0) > 0 and e.item >= 0
            ok = ok and (chosen is None or e.user in chosen)
            first_events += history.get(e.user, 0) == 0
            unknown += e.item < 0
            flags.append(ok)
            if ok and e.purchase:
                purchases += 1
                repeats += last_item.get(e.user) == e.item
            history[e.user] = history.get(e.user, 0) + 1
            last_item[e.user] = e.item
        hist_before = _history_before(chunk, history)
        for system in systems:
            for name, outs in system.step(chunk, now, flags).items():
                res = results.setdefault(name, SystemResults(name, n_list))
                for i, o in enumerate(outs):
                    if o is not None:
                        res.add(
                            rank=o.rank,
                            purchase=chunk[i].purchase,
                            auc_click=o.auc_click,
                            target_buy=o.target_buy,
                            items=o.items,
                            history=hist_before[i],
                            user=chunk[i].user,
                            ts=chunk[i].lite.ts,
                            slots=o.slots,
                            active=o.active,
                        )
            if sweep and isinstance(system, EngineStream) and system is systems[0]:
                _sweep_chunk(system, chunk, hist_before, sweep, rng, p_sweep)
        scored_n += sum(flags)
        if on_progress is not None:
            on_progress(hi - cut, n_scored_total)
    t_scored = time.perf_counter() - t1
    counts = {
        "events": len(evs),
        "warmup_events": cut,
        "scored_events": scored_n,
        "unscored_first_events": int(first_events),
        "unknown_item_events": int(unknown),
        "chunks": len(bounds),
        "users_scored": len({u for r in results.values() for u in r.users}),
        "scored_purchases_of_the_previous_item": f"{repeats}/{purchases}",
    }
    timing = {
        "warmup_s": round(t_warm, 3),
        "scored_s": round(t_scored, 3),
        "scored_events_per_s": round((len(evs) - cut) / max(t_scored, 1e-9), 1),
        "warmup_events_per_s": round(cut / max(t_warm, 1e-9), 1),
    }
    return StreamRun(results, sweep, counts, timing, warm_counts)


def _history_before(chunk: list[ReplayEvent], history_after: dict[str, int]) -> list[int]:
    """Per chunk event: the user's number of earlier events (``history_after`` counts the chunk)."""
    seen: dict[str, int] = {}
    out = [0] * len(chunk)
    for i in range(len(chunk) - 1, -1, -1):
        u = chunk[i].user
        seen[u] = seen.get(u, 0) + 1
        out[i] = history_after[u] - seen[u]
    return out


def _sweep_chunk(
    system: EngineStream,
    chunk: list[ReplayEvent],
    hist: list[int],
    sweep: dict[float, SystemResults],
    rng: np.random.Generator,
    p: float,
) -> None:
    """Re-select the lists of a sample of this chunk's events at each MMR lambda (same
    candidates and scores; only the selection changes)."""
    live, picks = system.last_live, system.last_picks
    if not picks:
        return
    take = np.flatnonzero(rng.random(len(picks)) < p)
    if take.size == 0:
        return
    sub = [picks[j] for j in take]
    index = system.cat.index
    for lam, res in sweep.items():
        opts = system.rec.opts.model_copy(update={"mmr_lambda": lam, "diversify": True})
        for j, recs in zip(take, system.rec.repick(sub, opts), strict=True):
            ev = chunk[live[j]]
            items = np.fromiter((index[r.item_id] for r in recs), np.int64, len(recs))
            hit = np.flatnonzero(items == ev.item)
            res.add(
                rank=int(hit[0]) if hit.size else -1,
                purchase=ev.purchase,
                auc_click=float("nan"),
                target_buy=float("nan"),
                items=items,
                history=hist[live[j]],
                user=ev.user,
                ts=ev.lite.ts,
            )
