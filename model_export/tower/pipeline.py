"""The tower-v2 steps of ``streamrec train`` after ``model_export.pipeline.prepare``:
(warm start) -> train -> test + baselines -> export (parity-gated) -> publish."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from model_export import baselines_eval
from model_export.report import training_report
from model_export.tower import checkpoint
from model_export.tower.modeling import TowerModel
from model_export.tower.publish import publish_version, tower_config
from model_export.tower.train import Tower, TowerResult, evaluate, train_tower
from schemas.manifest import Metrics, Status
from schemas.reports import TrainingReport
from stream_app.core.hooks import Hooks
from stream_app.registry import Registry

if TYPE_CHECKING:
    from model_export.pipeline import Prepared


def load_warm_start(version_dir: Path, prep: Prepared) -> Tower:
    return checkpoint.load_warm_start(version_dir, tower_config(prep), prep.space)


def fit(prep: Prepared, hooks: Hooks, init: TowerModel | None = None) -> TowerResult:
    cfg = tower_config(prep)
    hooks.stage(
        f"training the tower-v2 user tower ({len(prep.data.train)} examples, "
        f"{prep.space.n} items, K={cfg.k}, {cfg.layers} layers)"
    )
    steps = max(1, -(-len(prep.data.train) // prep.opts.batch_size))
    return train_tower(
        cfg,
        prep.opts,
        prep.space,
        prep.data.train,
        prep.data.valid,
        init=init,
        on_epoch=hooks.epoch,
        on_step=lambda e, s: hooks.progress(f"epoch {e}", s, steps),
    )


def test_table(prep: Prepared, tower: Tower, baselines: bool = True) -> dict[str, Metrics]:
    table = {"streamrec": evaluate(tower, prep.space, prep.data.test)}
    if baselines:
        table.update(baselines_eval.evaluate_baselines(prep.space, prep.data))
    return table


def run(
    prep: Prepared,
    hooks: Hooks,
    registry_dir: Path | None,
    publish: bool,
    warm_start: str | None,
    make_current: bool,
    status: Status,
    t_start: float,
) -> TrainingReport:
    init = None
    if warm_start is not None and registry_dir is not None:
        init = load_warm_start(Registry(registry_dir).path(warm_start), prep).model
    result = fit(prep, hooks, init)
    hooks.stage(f"testing on {len(prep.data.test)} held-out examples, with baselines")
    systems = test_table(prep, result.ranker)
    version: str | None = None
    parity: Metrics = {}
    if publish and registry_dir is not None:
        hooks.stage("exporting the tower graphs to ONNX (parity-gated) and publishing")
        version, parity = publish_version(
            prep, result.ranker, systems, Registry(registry_dir), warm_start, make_current, status
        )
    return training_report(prep, systems, result, version, parity, t_start)
