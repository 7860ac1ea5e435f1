"""``streamrec replay`` as named steps: data -> model versions (leakage-checked) -> systems ->
protocol run -> metrics. The CLI draws progress and tables around ``run_replay``; the report
module turns its result into files.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from schemas.manifest import Manifest
from schemas.settings import ReplaySettings, ServingSettings, Settings
from stream_app.core.hooks import Hooks
from stream_app.core.interests import InterestParams
from stream_app.datagen.jsonl import load_events, load_items
from stream_app.registry import Registry, RegistryError, sha256_file
from stream_app.replay import ablations, groundtruth, leakage, loo, results
from stream_app.replay.ablations import AblationTrainer
from stream_app.replay.baselines import CoocStream, PopStream
from stream_app.replay.catalogue import Catalogue, Feed, LoadedModel, load_model
from stream_app.replay.refresh import Refresher, RefreshingStream, RoundTrainer
from stream_app.replay.results import ReplayContext, ReplayData, ReplayModel, ReplayResult
from stream_app.replay.stream import (
    StreamConfig,
    replay_events,
    run_stream,
    selected_users,
    warmup_cut,
)
from stream_app.replay.systems import EngineStream, variant_options
from stream_app.serving.sessions import ModelLoadError

BASELINES = ("pop", "cooc")
MAIN = "streamrec"
RANKER_ONLY = "ranker-only"
SINGLE_PLAIN = "single-interest-no-div"
DESCRIPTIONS = {
    MAIN: "our model: multi-interest state, retrieval, multi-task ranker, diversified top-K",
    "no-diversity": "our model, same scores, plain top-K by score (no quotas, no MMR)",
    "single-interest": "our model trained and served with one interest slot (K=1)",
    SINGLE_PLAIN: "the single-interest model with plain top-K (compare with no-diversity)",
    "no-text": "our model trained with item-id vectors only (no language-model text vectors)",
    RANKER_ONLY: "loo diagnostic: our ranker alone scoring the whole catalogue (no retrieval, "
    "no list selection): the training pipeline's own test protocol",
    "pop": "popularity (stream: time-decayed, updated as events arrive; loo: train counts)",
    "cooc": "item co-occurrence (item-kNN over the last items of the user's history)",
}


class ReplayError(ValueError):
    """A replay that cannot run as asked (no model, bad options); the message says why."""


def _check_options(opts: ReplaySettings) -> None:
    for b in opts.baselines:
        if b not in BASELINES:
            msg = f"--baselines: expected some of {BASELINES}, got {b!r}"
            raise ReplayError(msg)
    for a in (*opts.ablations, *opts.ablation_versions):
        if a not in ablations.KNOWN:
            msg = f"--ablations: expected some of {ablations.KNOWN}, got {a!r}"
            raise ReplayError(msg)
    for name in opts.compare:
        if name in DESCRIPTIONS or not name.replace("-", "").replace("_", "").isalnum():
            msg = (
                f"--compare {name}=...: expected a new system name (letters, digits, - or _; "
                f"not one of {sorted(DESCRIPTIONS)}), got {name!r}"
            )
            raise ReplayError(msg)


def _resolve_versions(
    registry: Registry,
    main: Manifest,
    settings: Settings,
    items_path: Path,
    events_path: Path,
    hooks: Hooks,
    train_ablation: AblationTrainer | None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Version per trained ablation, and the reason for each one that is missing."""
    opts = settings.replay
    found, missing = {}, {}
    wanted = dict.fromkeys([*opts.ablations, *opts.ablation_versions])
    for kind in (a for a in wanted if a in ablations.TRAINED):
        version = opts.ablation_versions.get(kind) or ablations.find_trained(registry, main, kind)
        if version is None and train_ablation is not None:
            hooks.stage(f"training the {kind} ablation (same options, data and split)")
            version = train_ablation(
                settings, registry.root, main, kind, items_path, events_path, hooks
            )
        if version is not None and kind in opts.ablation_versions:
            try:
                problem = ablations.kind_problem(registry.manifest(version), kind)
            except RegistryError as exc:
                problem = str(exc)
            if problem:
                msg = f"--ablation-version {kind}={version}: {problem}"
                raise ReplayError(msg)
        if version is None:
            missing[kind] = (
                f"no {kind} version: pass --train-ablations, or --ablation-version {kind}=VERSION"
            )
        else:
            found[kind] = version
    return found, missing


def run_replay(
    settings: Settings,
    items_path: Path,
    events_path: Path,
    hooks: Hooks | None = None,
    train_ablation: AblationTrainer | None = None,
    sweep_lambdas: tuple[float, ...] = (),
    train_round: RoundTrainer | None = None,
) -> ReplayResult:
    """Replay with ``settings.replay`` against ``settings.registry_dir``; the result's
    ``context`` (catalogue, metric context, warm-up cut) serves callers that score more
    systems on the same events. ``train_ablation`` trains missing ablation versions
    (``--train-ablations``); ``sweep_lambdas`` re-selects the main model's lists at other
    MMR lambdas (the report's trade-off plot); ``train_round`` runs the fine-tuning rounds of
    ``--finetune-every`` (``stream_app.replay.refresh``)."""
    hooks = hooks or Hooks()
    opts = settings.replay
    _check_options(opts)
    if opts.finetune_every and (opts.protocol != "stream" or train_round is None):
        msg = "--finetune-every: needs --protocol stream (and the CLI's round trainer)"
        raise ReplayError(msg)
    t_start = time.perf_counter()
    registry_dir = settings.registry_dir
    registry = Registry(registry_dir)
    version = opts.version or registry.current()
    if version is None:
        msg = f"registry {registry_dir}: no CURRENT version; pass --model VERSION"
        raise ReplayError(msg)
    try:
        main = registry.manifest(version)
    except RegistryError as exc:
        raise ReplayError(str(exc)) from None
    hooks.stage(f"loading {items_path.name} and {events_path.name}")
    items, events = load_items(items_path), load_events(events_path)
    if not events:
        msg = f"{events_path}: expected events, got none"
        raise ReplayError(msg)
    sha = sha256_file(events_path)
    n_list = max(opts.ks)
    if opts.protocol == "loo":
        data = loo.prepare(events, items, opts.max_users)
        cat, first_scored = data.cat, math.nan
    else:
        cat = Catalogue.build(items, [e.item_id for e in events])
        evs = replay_events(events, cat)
        cut = warmup_cut(evs, opts.warmup_frac)
        if cut >= len(evs):
            msg = f"--warmup-frac {opts.warmup_frac}: leaves no event to score"
            raise ReplayError(msg)
        first_scored = evs[cut].lite.ts
    leakage.check(main, opts.protocol, events_sha256=sha, first_scored_ts=first_scored)
    versions, missing = _resolve_versions(
        registry, main, settings, items_path, events_path, hooks, train_ablation
    )
    compared = dict(opts.compare)
    for v in (*versions.values(), *compared.values()):
        leakage.check(
            registry.manifest(v), opts.protocol, events_sha256=sha, first_scored_ts=first_scored
        )
    fallback = InterestParams.from_settings(settings.interests)
    hooks.stage(f"loading model {version}" + "".join(f", {k} {v}" for k, v in versions.items()))
    models = {}
    for kind, v in {MAIN: version, **versions, **compared}.items():
        try:
            models[kind] = load_model(
                registry, v, cat, fallback, settings.serving.device, settings.serving.ort_threads
            )
        except ModelLoadError as exc:
            msg = f"cannot replay {kind} version {v}: {exc}"
            raise ReplayError(msg) from None
    cat.text = models[MAIN].text
    base_opts = settings.serving.model_copy(update={"top_k": n_list})
    variants = {MAIN: base_opts}
    if "no-diversity" in opts.ablations:
        variants["no-diversity"] = variant_options(base_opts, "no-diversity")
    groups: list[tuple[LoadedModel, dict[str, ServingSettings]]] = [(models[MAIN], variants)]
    for kind in versions:
        group = {kind: base_opts}
        if kind == "single-interest" and "no-diversity" in variants:
            group[SINGLE_PLAIN] = variants["no-diversity"]  # K=1 vs K=4 with selection off
        groups.append((models[kind], group))
    for name in compared:  # another version side by side, served exactly like the main one
        groups.append((models[name], {name: base_opts}))
    world = groundtruth.load(events_path, cat.ids)
    if opts.protocol == "loo":
        out, ctx = _run_loo(data, groups, opts, sweep_lambdas, n_list, hooks, world)
        context = ReplayContext(cat, ctx, world)
    else:
        refresher = None
        if opts.finetune_every and train_round is not None:
            refresher = Refresher(
                settings,
                registry,
                version,
                items,
                events,
                lambda reg, v: load_model(
                    reg, v, cat, fallback, settings.serving.device, settings.serving.ort_threads
                ),
                train_round,
                hooks,
            )
        try:
            out, ctx = _run_stream(
                evs, cat, groups, opts, sweep_lambdas, n_list, hooks, world, refresher
            )
        finally:
            if refresher is not None:
                refresher.close()
        chosen = selected_users(evs, cut, opts.max_users)
        context = ReplayContext(cat, ctx, world, cut, chosen)
    order = [
        MAIN,
        "no-diversity",
        "single-interest",
        SINGLE_PLAIN,
        "no-text",
        RANKER_ONLY,
        *compared,
        *BASELINES,
    ]
    out["systems"] = {k: out["systems"][k] for k in order if k in out["systems"]}
    return ReplayResult(
        **out,
        protocol=opts.protocol,
        ks=list(opts.ks),
        data=ReplayData(
            items=str(items_path),
            events=str(events_path),
            events_sha256=sha,
            n_events=len(events),
            n_items=len(cat),
            has_categories=cat.has_categories,
        ),
        model=ReplayModel(
            registry=str(registry_dir),
            version=version,
            ablation_versions=versions,
            compared=compared,
            engine=main.engine.kind,
            k=models[MAIN].model.k,
            split=main.training.data.split,
            train_until=main.training.data.train_until,
        ),
        options={
            "warmup_frac": opts.warmup_frac,
            "max_users": opts.max_users,
            "engine": base_opts.model_dump(),
        },
        descriptions={k: _describe(k, compared, registry) for k in out["systems"]},
        missing=missing,
        seconds=round(time.perf_counter() - t_start, 1),
        context=context,
    )


def _describe(name: str, compared: dict[str, str], registry: Registry) -> str:
    if name not in compared:
        return DESCRIPTIONS[name]
    m = registry.manifest(compared[name])
    return f"registry version {m.version} (engine {m.engine.kind}), served like the main model"


def _metrics(
    res: dict[str, results.SystemResults], ctx: results.MetricContext, by_type: bool, max_k: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    table = {n: results.system_metrics(r, ctx, by_type) for n, r in res.items()}
    curves = {n: results.curves(r, max_k) for n, r in res.items()}
    return table, curves


def _sweep_table(
    sweep: dict[float, results.SystemResults], ctx: results.MetricContext
) -> list[dict[str, float]]:
    k = ctx.ks[0]
    rows = []
    for lam, r in sorted(sweep.items()):
        m = results.system_metrics(r, ctx, by_type=False)
        rows.append(
            {
                "lambda": lam,
                f"ndcg@{k}": m[f"ndcg@{k}"],
                f"hr@{k}": m[f"hr@{k}"],
                f"ild@{k}": m[f"ild@{k}"],
                "examples": m["examples"],
                **{x: m[x] for x in (f"true_interest_coverage@{k}",) if x in m},
            }
        )
    return rows


def _run_stream(
    evs: list[Any],
    cat: Catalogue,
    groups: list[Any],
    opts: ReplaySettings,
    sweep_lambdas: tuple[float, ...],
    n_list: int,
    hooks: Hooks,
    world: Any,
    refresher: Refresher | None = None,
) -> tuple[dict[str, Any], results.MetricContext]:
    systems: list[Any] = [EngineStream(Feed(lm, cat), cat, variants) for lm, variants in groups]
    if refresher is not None:  # the main engine, fine-tuned as it goes
        lm, variants = groups[0]
        systems[0] = RefreshingStream(Feed(lm, cat), cat, variants, refresher, opts.finetune_every)
    if "pop" in opts.baselines:
        systems.append(PopStream(cat, n_list))
    if "cooc" in opts.baselines:
        n_scored = len(evs) - warmup_cut(evs, opts.warmup_frac)
        systems.append(CoocStream(cat, n_list, refit_every=max(1000, n_scored // 10)))
    cfg = StreamConfig(
        ks=opts.ks,
        warmup_frac=opts.warmup_frac,
        chunk=opts.batch,
        max_users=opts.max_users,
        sweep_lambdas=sweep_lambdas,
    )
    hooks.stage(f"replaying {len(evs)} events in time order ({len(systems)} engines/baselines)")
    run = run_stream(evs, cat, systems, cfg, lambda d, t: hooks.progress("replay", d, t))
    ctx = results.MetricContext(
        opts.ks,
        cat.text,
        cat.categories if cat.has_categories else None,
        results.smoothed_popularity(run.warm_counts),
        len(cat),
        world,
    )
    hooks.stage("computing metrics")
    table, curves = _metrics(run.results, ctx, True, n_list)
    out = {
        "systems": table,
        "curves": curves,
        "sweep": _sweep_table(run.sweep, ctx),
        "counts": {**run.counts, **(refresher.counts() if refresher else {})},
        "timing": {
            **run.timing,
            **({"finetune_s": sum(r.seconds for r in refresher.log)} if refresher else {}),
        },
    }
    return out, ctx


def _run_loo(
    data: loo.LooData,
    groups: list[Any],
    opts: ReplaySettings,
    sweep_lambdas: tuple[float, ...],
    n_list: int,
    hooks: Hooks,
    world: Any,
) -> tuple[dict[str, Any], results.MetricContext]:
    res: dict[str, results.SystemResults] = {}
    t0 = time.perf_counter()
    hooks.stage(
        f"leave-one-out over {len(data.users)} users, {len(data.cat)} items "
        "(full ranking, history masked)"
    )
    if "pop" in opts.baselines:
        res["pop"] = loo.eval_pop(data, n_list)
    if "cooc" in opts.baselines:
        res["cooc"] = loo.eval_cooc(data, n_list)
    sweep: dict[float, results.SystemResults] = {}
    for n, (lm, variants) in enumerate(groups):
        engine = loo.EngineLoo(
            lm,
            variants,
            sweep_lambdas if n == 0 else (),
            ranker_only=RANKER_ONLY if n == 0 else None,
        )
        res.update(engine.run(data, n_list, on_progress=hooks.progress, label=next(iter(variants))))
        if n == 0:
            sweep = engine.sweep
    ctx = results.MetricContext(
        opts.ks,
        data.cat.text,
        data.cat.categories if data.cat.has_categories else None,
        results.smoothed_popularity(data.train_pop),
        len(data.cat),
        world,
    )
    hooks.stage("computing metrics")
    table, curves = _metrics(res, ctx, False, n_list)
    reference = None
    if "pop" in res and opts.max_users is None:
        reference = loo.loo_reference_check(res["pop"], opts.ks, data.events)
    counts = {
        "users": len(data.split.users),
        "users_scored": len(data.users),
        "catalogue": len(data.cat),
        "events": len(data.events),
    }
    out = {
        "systems": table,
        "curves": curves,
        "sweep": _sweep_table(sweep, ctx),
        "counts": counts,
        "pop_equals_loo_popularity_eval": reference,
        "timing": {"seconds": round(time.perf_counter() - t0, 2)},
    }
    return out, ctx
