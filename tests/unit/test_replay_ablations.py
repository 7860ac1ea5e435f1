"""``--train-ablations``: the single-interest (k=1) and no-text versions are trained with the
main model's options, published without being served, reused by the next run, and replayed
side by side with the main model on the same events."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schemas.manifest import RankerConfigRecord
from stream_app.registry import Registry
from stream_app.replay import ablations
from stream_app.replay.runner import run_replay
from tests.settings import replay_settings

pytestmark = pytest.mark.slow


def test_train_ablations_then_reuse_them(
    tiny_world: Path, tiny_registry: Path, tmp_path: Path
) -> None:
    reg_dir = tmp_path / "registry"
    shutil.copytree(tiny_registry, reg_dir)
    reg = Registry(reg_dir)
    current = reg.require_current()
    from model_export.ablations import train

    settings = replay_settings(reg_dir, ks=(10,), baselines=(), max_users=30)
    args = (settings, tiny_world / "items.jsonl", tiny_world / "events.jsonl")
    out = run_replay(*args, train_ablation=train)
    assert list(out.systems) == [
        "streamrec",
        "no-diversity",
        "single-interest",
        "single-interest-no-div",
        "no-text",
    ]
    assert out.missing == {}
    versions = out.model.ablation_versions
    single, no_text = (reg.manifest(versions[k]) for k in ("single-interest", "no-text"))
    assert single.engine.config.k == 1 and single.status == "ablation"
    assert isinstance(no_text.engine.config, RankerConfigRecord)
    assert no_text.engine.config.use_text is False and no_text.engine.config.k == 4
    main = reg.manifest(current)
    for m in (single, no_text):  # otherwise the same options, data and split
        for key in ("split", "d", "hidden", "epochs", "negatives", "seed"):
            assert getattr(m.training.settings, key) == getattr(main.training.settings, key), key
        assert m.training.data.events_sha256 == main.training.data.events_sha256
    assert reg.current() == current  # serving untouched
    n_versions = len(reg.versions())
    again = run_replay(*args)
    assert again.model.ablation_versions == versions and len(reg.versions()) == n_versions
    n = out.counts["scored_events"]
    assert all(row["examples"] == n for row in out.systems.values())
    assert ablations.find_trained(reg, main, "no-text") == versions["no-text"]
