"""Offline replay throughput (``stream`` protocol) on the scenario: 10,000 items, K=4.

    .venv/bin/python bench/replay_bench.py                      # generate + train, then measure
    .venv/bin/python bench/replay_bench.py --world W --registry R [--profile]

Prints a table of scored events/s (the events after the warm-up cut: state update, retrieval,
ranker, diversification and scoring of the list) for a few configurations, the warm-up rate
(state updates only) and, with ``--profile``, where the time goes (cProfile, grouped by the
engine stage that owns it).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import prepare_registry
from schemas.settings import (
    ServingSettings,
    Settings,
)
from stream_app.datagen.jsonl import load_events, load_items
from stream_app.registry import Registry
from stream_app.replay.baselines import CoocStream, PopStream
from stream_app.replay.catalogue import Catalogue, Feed, load_model
from stream_app.replay.stream import StreamConfig, replay_events, run_stream
from stream_app.replay.systems import EngineStream, variant_options

console = Console()
STAGES = {  # (file suffix, function) -> stage, for the profile summary
    ("engine.py", "apply"): "state update (Recommender.apply)",
    ("engine.py", "score_batch"): "score_batch: retrieval + candidates + ranker",
    ("retrieval.py", "search"): "  retrieval (ExactRetriever: matmul + top-n)",
    ("engine.py", "_candidates"): "  candidate union + exclusions",
    ("covisit.py", "neighbours"): "  co-visitation neighbours (retrieval)",
    ("covisit.py", "scores"): "  co-visitation feature",
    ("serving/model.py", "score"): "  ranker (ONNX Runtime)",
    ("serving/model.py", "slot_match"): "  interest slot per candidate",
    ("engine.py", "select"): "select: quotas + MMR + Rec objects",
    ("systems.py", "step"): "replay step (all of the above + bookkeeping)",
}


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    world = Path(args.world) if args.world else Path(args.workdir) / "world"
    if not (world / "events.jsonl").exists():
        from stream_app.datagen.synthetic import generate_world

        console.print(f"generating the scenario world in {world} (10,000 items, K=4)")
        generate_world(world, users=args.users, items=10_000, events=args.events, seed=3)
    # the worker bench's cache: 1 epoch (speed, not accuracy), retrained when the model code changes
    registry = Path(args.registry) if args.registry else prepare_registry(Path(args.workdir), world)
    return world, registry


def measure(
    name: str, systems: list, evs: list, cat: Catalogue, chunk: int, profile: bool = False
) -> tuple[dict, pstats.Stats | None]:
    """One run; with ``profile`` the profiler covers the scored phase after its first chunk."""
    prof = cProfile.Profile() if profile else None
    mark: dict[str, float] = {}

    def on_progress(done: int, total: int) -> None:
        if prof is not None and not mark:
            mark.update(t=time.perf_counter(), done=done)
            prof.enable()

    run = run_stream(evs, cat, systems, StreamConfig(ks=(10,), chunk=chunk), on_progress)
    row = {"config": name, **run.timing, "scored": run.counts["scored_events"]}
    if prof is None:
        return row, None
    prof.disable()
    stats = pstats.Stats(prof)
    stats.seconds = time.perf_counter() - mark["t"]  # type: ignore[attr-defined]
    stats.events = len(evs) - run.counts["warmup_events"] - mark["done"]  # type: ignore[attr-defined]
    return row, stats


def bare_engine(lm, cat: Catalogue, evs: list, opts: ServingSettings, chunk: int) -> dict:
    """The engine alone on the same scored events: Recommender.apply for each event, one
    Recommender.recommend per chunk (no replay bookkeeping): the ceiling for replay."""
    from stream_app.core.engine import Recommender
    from stream_app.replay.stream import warmup_cut

    feed = Feed(lm, cat)
    feed.add_all()
    rec = Recommender(feed.bundle, lm.params, opts)
    states: dict = {}
    cut = warmup_cut(evs, 0.8)
    for e in evs[:cut]:
        states[e.user] = rec.apply(states.get(e.user), e.lite)
    t0 = time.perf_counter()
    for lo in range(cut, len(evs), chunk):
        batch = evs[lo : lo + chunk]
        snaps = []
        for e in batch:
            s = states.get(e.user)
            if s is not None:
                snaps.append(s)
            states[e.user] = rec.apply(s, e.lite)
        rec.recommend(snaps, batch[0].lite.ts)
    sec = time.perf_counter() - t0
    return {
        "scored_events_per_s": (len(evs) - cut) / sec,
        "warmup_events_per_s": float("nan"),
        "scored": len(evs) - cut,
        "scored_s": sec,
    }


def stage_table(stats: pstats.Stats) -> Table:
    total_s, n = stats.seconds, stats.events  # type: ignore[attr-defined]
    table = Table(title=f"where the scored phase's time goes (cProfile over {n} events)")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    table.add_column("µs / event", justify="right")
    found: dict[str, float] = {}
    for (file, _, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for (suffix, name), stage in STAGES.items():
            if func == name and file.endswith(suffix):
                found[stage] = found.get(stage, 0.0) + cum
    order = {stage: n for n, stage in enumerate(STAGES.values())}
    for stage, sec in sorted(found.items(), key=lambda kv: order[kv[0]]):
        table.add_row(stage, f"{sec:.2f}", f"{sec / total_s:.0%}", f"{sec / n * 1e6:.0f}")
    table.add_row(
        "total (profiled, with profiler overhead)",
        f"{total_s:.2f}",
        "100%",
        f"{total_s / n * 1e6:.0f}",
    )
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", help="dir with items.jsonl/events.jsonl (default: generate)")
    ap.add_argument("--registry", help="registry with a CURRENT version (default: train)")
    ap.add_argument("--workdir", default="var/bench-replay")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=60_000, help="events replayed (time order)")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = ORT's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (best kept)")
    ap.add_argument("--profile", action="store_true", help="also profile replay's own run")
    ap.add_argument("--profile-only", action="store_true", help="skip the throughput table")
    args = ap.parse_args()
    world, registry = prepare(args)
    items = load_items(world / "items.jsonl")
    events = load_events(world / "events.jsonl")
    cat = Catalogue.build(items, [e.item_id for e in events])
    reg = Registry(registry)
    settings = Settings()
    version = reg.current()
    if version is None:
        msg = f"registry {registry}: no CURRENT version"
        raise SystemExit(msg)
    lm = load_model(reg, version, cat, settings_params(settings), args.device, args.threads)
    cat.text = lm.text
    evs = replay_events(events, cat)[: args.limit]
    base = settings.serving.model_copy(update={"top_k": 10})
    console.print(
        f"{len(cat)} items, K={lm.model.k}, {len(evs)} events (warm-up 80 %), "
        f"{base.candidates} candidates, top {base.top_k}, cpus {os.cpu_count()}, "
        f"ORT {lm.model.providers[0]}"
    )
    configs: list[tuple[str, Callable[[], list[Any]]]] = [
        (
            "engine only (no target scoring)",
            lambda: [EngineStream(Feed(lm, cat), cat, {"streamrec": base}, score_targets=False)],
        ),
        (
            "streamrec (as replay runs it)",
            lambda: [EngineStream(Feed(lm, cat), cat, {"streamrec": base})],
        ),
        (
            "+ no-diversity (re-selection)",
            lambda: [
                EngineStream(
                    Feed(lm, cat),
                    cat,
                    {"streamrec": base, "no-diversity": variant_options(base, "no-diversity")},
                )
            ],
        ),
        (
            "+ no-diversity + pop + cooc",
            lambda: [
                EngineStream(
                    Feed(lm, cat),
                    cat,
                    {"streamrec": base, "no-diversity": variant_options(base, "no-diversity")},
                ),
                PopStream(cat, 10),
                CoocStream(cat, 10, refit_every=5000),
            ],
        ),
        (
            "engine, no diversification",
            lambda: [
                EngineStream(
                    Feed(lm, cat),
                    cat,
                    {"no-div": variant_options(base, "no-diversity")},
                    score_targets=False,
                )
            ],
        ),
    ]
    if not args.profile_only:
        table = Table(title=f"offline replay throughput (stream protocol, best of {args.repeat})")
        for col in ("configuration", "scored ev/s", "warm-up ev/s", "scored events", "seconds"):
            table.add_column(col, justify="right" if col != "configuration" else "left")
        row = max(
            (bare_engine(lm, cat, evs, base, args.chunk) for _ in range(args.repeat)),
            key=lambda r: r["scored_events_per_s"],
        )
        table.add_row(
            "bare engine (apply + recommend)",
            f"{row['scored_events_per_s']:,.0f}",
            "-",
            str(row["scored"]),
            f"{row['scored_s']:.1f}",
        )
        for name, build in configs:
            row = max(
                (measure(name, build(), evs, cat, args.chunk)[0] for _ in range(args.repeat)),
                key=lambda r: r["scored_events_per_s"],
            )
            table.add_row(
                name,
                f"{row['scored_events_per_s']:,.0f}",
                f"{row['warmup_events_per_s']:,.0f}",
                str(row["scored"]),
                f"{row['scored_s']:.1f}",
            )
        console.print(table)
    if args.profile or args.profile_only:
        _, stats = measure("profile", configs[1][1](), evs, cat, args.chunk, profile=True)
        assert stats is not None
        console.print(stage_table(stats))


def settings_params(settings: Settings):  # type: ignore[no-untyped-def]
    from stream_app.core.interests import InterestParams

    return InterestParams.from_settings(settings.interests)


if __name__ == "__main__":
    main()
