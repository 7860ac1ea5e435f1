"""The replay ablations' training (torch side): the ``single-interest`` (K=1) and ``no-text``
versions of a model, trained with otherwise the same options, data and split as the model
under evaluation, published with status ``ablation`` (never current). ``streamrec replay
--train-ablations`` injects ``train`` into the replay (``stream_app.replay.ablations``).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from model_export.pipeline import TrainOptions, run_training
from model_export.train import TrainConfig
from schemas.settings import Settings
from stream_app.core.hooks import Hooks


def train_options(main: dict[str, Any], kind: str) -> Any:
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
    hooks: Hooks,
) -> str:
    """Train and publish (not current, status 'ablation') one ablation; returns its version."""
    report = run_training(
        ablation_settings(settings, main, kind),
        items_path,
        events_path,
        train_options(main, kind),
        hooks.prefixed(f"  {kind}: "),
        registry_dir=registry_dir,
        make_current=False,
        status="ablation",
    )
    return str(report["version"])
