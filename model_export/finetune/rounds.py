"""One fine-tuning round: examples from the buffer through the same ``update_interests`` path,
warm start from CURRENT, early-stopped training, then candidate and current evaluated on
the SAME most-recent held-out slice; publish only when the gate passes.

Gate: the candidate may be worse than current by at most ``tolerance`` on NDCG@10 and on
both head AUCs, and every ONNX export must pass parity. A refused candidate is published
with status "refused" (never current) and the reason in its manifest, for inspection.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_export import checkpoint
from model_export.export import ParityError
from model_export.pipeline import Prepared, fit, prepare
from model_export.publish import keep_refused_weights, publish_version
from model_export.tower import pipeline as tower_pipeline
from model_export.tower import publish as tower_publish
from model_export.tower import train as tower_train
from model_export.train import evaluate
from schemas.manifest import Manifest, RoundRecord, TowerEngine
from schemas.reports import RoundResult
from schemas.settings import Settings, TrainingSettings
from stream_app.core.hooks import Hooks
from stream_app.registry import Registry

GATED = ("ndcg@10", "auc_click", "auc_purchase")
ARCHITECTURE = ("d", "hidden", "recent_len", "use_text", "use_ids")


def gate(candidate: dict[str, float], current: dict[str, float], tolerance: float) -> list[str]:
    """Reasons to refuse (empty = pass). A metric may drop by at most ``tolerance`` or, when the
    held-out slice is too small to resolve that, by twice its standard error (``<name>_se``):
    sampling noise alone never refuses a candidate. NaN on either side is not gated."""
    reasons = []
    for name in GATED:
        cand, cur = candidate.get(name, math.nan), current.get(name, math.nan)
        if math.isnan(cand) or math.isnan(cur):
            continue
        se = candidate.get(f"{name}_se", 0.0)
        margin = max(tolerance, 2.0 * se if math.isfinite(se) else 0.0)
        if cand < cur - margin:
            reasons.append(f"{name} {cand:.4f} < current {cur:.4f} - {margin:.4f}")
    return reasons


def options_from(manifest: Manifest | None, base: TrainingSettings) -> TrainingSettings:
    """Warm starts need the current version's architecture (and engine): copy it over ``base``."""
    if manifest is None:
        return base
    engine = manifest.engine
    if isinstance(engine, TowerEngine):
        cfg_t = engine.config
        return base.model_copy(
            update={
                "engine": engine.kind,
                "d": cfg_t.d,
                "recent_len": cfg_t.recent_len,
                "tower_layers": cfg_t.layers,
                "tower_heads": cfg_t.heads,
                "use_ids": cfg_t.use_ids,
            }
        )
    cfg = engine.config
    update: dict[str, Any] = {name: getattr(cfg, name) for name in ARCHITECTURE}
    return base.model_copy(update={"engine": engine.kind, **update})


@dataclass(frozen=True)
class _EngineOps:
    """What a round does with an engine: warm start, train, evaluate, publish."""

    load_warm_start: Callable[[Path, Prepared], Any]
    fit: Callable[..., Any]
    evaluate: Callable[..., dict[str, float]]
    publish_version: Callable[..., tuple[str, Any]]
    keep_refused_weights: Callable[..., str]


def _engine_ops(engine: str) -> _EngineOps:
    """Resolved at call time (module attributes, so tests can patch them)."""
    if engine == "tower-v2":
        return _EngineOps(
            tower_pipeline.load_warm_start,
            tower_pipeline.fit,
            tower_train.evaluate,
            tower_publish.publish_version,
            tower_publish.keep_refused_weights,
        )
    return _EngineOps(
        lambda path, prep: checkpoint.load_warm_start(path, prep.ranker_config(), prep.space),
        fit,
        evaluate,
        publish_version,
        keep_refused_weights,
    )


def find_round(registry: Registry, round_id: str) -> str | None:
    for manifest in reversed(list(registry.manifests())):
        if manifest.round is not None and manifest.round.id == round_id:
            return manifest.version
    return None


def run_round(
    settings: Settings,
    registry: Registry,
    items: list[Any],
    events: list[Any],
    tolerance: float,
    round_id: str,
    hooks: Hooks | None = None,
    make_current: bool = True,
    corrupt_labels: bool = False,
) -> RoundResult:
    """``settings.training`` are the round's training options; the architecture comes from
    CURRENT (warm start). ``corrupt_labels`` shuffles the training targets (a deliberately bad
    candidate: tests and drills use it to show that the gate refuses it)."""
    hooks = hooks or Hooks()
    t0 = time.perf_counter()
    parent = registry.current()
    done = find_round(registry, round_id)
    if done is not None:
        reason = f"round {round_id} already produced {done}"
        return RoundResult(decision="skipped", reason=reason, version=done, parent=parent)
    opts = options_from(registry.manifest(parent) if parent else None, settings.training)
    prep = prepare(
        settings.model_copy(update={"training": opts}), items, events, hooks, round=round_id
    )
    counts = {
        "events": len(events),
        "train": len(prep.data.train),
        "valid": len(prep.data.valid),
        "test": len(prep.data.test),
    }
    if len(prep.data.train) == 0 or len(prep.data.test) == 0:
        return RoundResult(
            decision="skipped",
            reason="not enough data for a round",
            version=None,
            parent=parent,
            counts=counts,
            seconds=time.perf_counter() - t0,
        )
    if corrupt_labels:
        rng = np.random.default_rng(opts.seed)
        prep.data.train.target[:] = rng.integers(1, prep.space.n + 1, len(prep.data.train))
    ops = _engine_ops(opts.engine)
    init = current = None
    if parent is not None:
        init = ops.load_warm_start(registry.path(parent), prep).model
        current = ops.load_warm_start(registry.path(parent), prep)
    result = ops.fit(prep, hooks, init)
    hooks.stage("evaluating candidate and current on the same held-out slice")
    cand = ops.evaluate(result.ranker, prep.space, prep.data.test)
    cur = ops.evaluate(current, prep.space, prep.data.test) if current else {}
    reasons = gate(cand, cur, tolerance) if cur else []
    systems = {"streamrec": cand, **({"current": cur} if cur else {})}
    record = RoundRecord(
        id=round_id, counts=counts, candidate=cand, current=cur, tolerance=tolerance
    )
    try:
        version, _ = ops.publish_version(
            prep,
            result.ranker,
            systems,
            registry,
            parent,
            make_current=make_current and not reasons,
            status="refused" if reasons else "published",
            round_record=record,
            refused_reason="; ".join(reasons) or None,
        )
    except ParityError as exc:
        reasons.append(f"ONNX parity: {exc}")
        version = ops.keep_refused_weights(
            prep, result.ranker, systems, registry, parent, record, "; ".join(reasons)
        )
    return RoundResult(
        decision="refused" if reasons else "published",
        reason="; ".join(reasons) or "gate passed",
        version=version,
        parent=parent,
        candidate=cand,
        current=cur,
        counts=counts,
        epochs=len(result.history),
        seconds=time.perf_counter() - t0,
    )
