"""The replay ablations' training (torch side): the ``single-interest`` (K=1) and ``no-text``
versions of a model, trained with otherwise the same settings, data and split as the model
under evaluation, published with status ``ablation`` (never current). ``streamrec replay
--train-ablations`` injects ``train`` into the replay (``stream_app.replay.ablations``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_export.pipeline import run_training
from schemas.manifest import Manifest
from schemas.settings import Settings
from stream_app.core.hooks import Hooks


def ablation_settings(settings: Settings, main: Manifest, kind: str) -> Settings:
    """The settings ``main`` was trained with (training options, interest definition,
    encoder), k=1 for ``single-interest``, no text vectors for ``no-text``."""
    training = main.training.settings
    if kind == "no-text":
        training = training.model_copy(update={"use_text": False})
    over: dict[str, Any] = {
        "interests.k": 1 if kind == "single-interest" else main.engine.config.k,
        "model_path": main.encoder.model_path,
        "training": training.model_dump(),
    }
    p = main.engine.interests
    if p is not None:
        over.update(
            {
                "interests.recent": p.recent,
                "interests.half_life_hours": p.half_life_s / 3600.0,
                "interests.purchase_weight": p.purchase_weight,
                "interests.similarity_threshold": p.threshold,
                "interests.min_alpha": p.min_alpha,
                "interests.max_event_ids": p.max_event_ids,
                "interests.max_purchased": p.max_purchased,
            }
        )
    return settings.with_overrides(**over)


def train(
    settings: Settings,
    registry_dir: Path,
    main: Manifest,
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
        hooks.prefixed(f"  {kind}: "),
        registry_dir=registry_dir,
        make_current=False,
        status="ablation",
    )
    if report.version is None:
        msg = f"ablation {kind}: training published no version"
        raise RuntimeError(msg)
    return report.version
