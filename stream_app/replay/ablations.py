"""Versions for the model ablations: one interest slot (``single-interest``) and item-id-only
item vectors (``no-text``), trained with otherwise the same options, data and split as the
model under evaluation. ``no-diversity`` needs no version (same model, selection off).

A version is taken, in order, from ``--ablation-version NAME=VERSION``, from an earlier
``--train-ablations`` run (a registry version with status ``ablation`` whose manifest matches),
or trained now when ``--train-ablations`` is given (``run_training(make_current=False,
status="ablation")``, so serving is untouched). Otherwise it is reported missing, never faked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from schemas.settings import Settings
from stream_app.registry import Registry

TRAINED = ("single-interest", "no-text")
KNOWN = (*TRAINED, "no-diversity")

_IGNORED = {"data", "threads"}


def _signature(manifest: dict[str, Any]) -> dict[str, Any]:
    training = manifest.get("training", {})
    sig = {k: v for k, v in training.items() if k not in _IGNORED}
    sig["events_sha256"] = training.get("data", {}).get("events_sha256")
    sig["k"] = manifest.get("config", {}).get("k")
    sig["space"] = manifest.get("space")
    return sig


def expected_signature(main: dict[str, Any], kind: str) -> dict[str, Any]:
    sig = _signature(main)
    if kind == "single-interest":
        sig["k"] = 1
    elif kind == "no-text":
        sig["use_text"] = False
    else:
        msg = f"ablation: expected one of {TRAINED}, got {kind!r}"
        raise ValueError(msg)
    return sig


def kind_problem(manifest: dict[str, Any], kind: str) -> str | None:
    """Why ``manifest`` is not a ``kind`` ablation (None when it is)."""
    cfg = manifest.get("config", {})
    if kind == "single-interest" and cfg.get("k") != 1:
        return f"expected a model trained with k=1, got k={cfg.get('k')}"
    if kind == "no-text" and cfg.get("use_text") is not False:
        return f"expected a model trained with use_text=false, got use_text={cfg.get('use_text')}"
    return None


def find_trained(registry: Registry, main: dict[str, Any], kind: str) -> str | None:
    """Newest registry version with status 'ablation' matching ``kind`` of the main model."""
    want = expected_signature(main, kind)
    for version in reversed(registry.versions()):
        m = registry.manifest(version)
        if m.get("status") == "ablation" and _signature(m) == want:
            return version
    return None


def train_options(main: dict[str, Any], kind: str) -> Any:
    from model_export.pipeline import TrainOptions
    from model_export.train import TrainConfig

    training = main.get("training", {})
    cfg_keys = {f.name for f in fields(TrainConfig)}
    opt_keys = {f.name for f in fields(TrainOptions)} - {"train"}
    opts = TrainOptions(
        **{k: v for k, v in training.items() if k in opt_keys},
        train=TrainConfig(**{k: v for k, v in training.items() if k in cfg_keys}),
    )
    if kind == "no-text":
        opts.use_text = False
    return opts


def ablation_settings(settings: Settings, main: dict[str, Any], kind: str) -> Settings:
    """Settings the main model was trained with (its interest params, encoder), k=1 for
    ``single-interest``."""
    p = main.get("interest_params", {})
    over: dict[str, Any] = {
        "interests.recent": p.get("recent"),
        "interests.half_life_hours": p["half_life_s"] / 3600.0 if "half_life_s" in p else None,
        "interests.purchase_weight": p.get("purchase_weight"),
        "interests.similarity_threshold": p.get("threshold"),
        "interests.min_alpha": p.get("min_alpha"),
        "interests.max_event_ids": p.get("max_event_ids"),
        "interests.max_purchased": p.get("max_purchased"),
        "interests.k": 1 if kind == "single-interest" else p.get("k"),
        "model_path": main.get("encoder", {}).get("model_path"),
    }
    return settings.with_overrides(**over)


def train(
    settings: Settings,
    registry_dir: Path,
    main: dict[str, Any],
    kind: str,
    items_path: Path,
    events_path: Path,
    progress: Callable[[str, int, int], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> str:
    """Train and publish (not current, status 'ablation') one ablation; returns its version."""
    from model_export.pipeline import Hooks, run_training

    hooks = Hooks()
    if progress is not None:
        hooks.progress = progress
    if stage is not None:
        hooks.stage = lambda text: stage(f"  {kind}: {text}")
    report = run_training(
        ablation_settings(settings, main, kind),
        items_path,
        events_path,
        train_options(main, kind),
        hooks,
        registry_dir=registry_dir,
        make_current=False,
        status="ablation",
    )
    return str(report["version"])
