"""``--train-ablations``: the single-interest (k=1) and no-text versions are trained with the
main model's options, published without being served, reused by the next run, and replayed
side by side with the main model on the same events."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schemas.settings import Settings
from stream_app.registry import Registry
from stream_app.replay import ablations
from stream_app.replay.runner import ReplayOptions, run_replay

pytestmark = pytest.mark.slow


def test_train_ablations_then_reuse_them(
    tiny_world: Path, tiny_registry: Path, tmp_path: Path
) -> None:
    reg_dir = tmp_path / "registry"
    shutil.copytree(tiny_registry, reg_dir)
    reg = Registry(reg_dir)
    current = reg.require_current()
    from model_export.ablations import train

    opts = ReplayOptions(ks=(10,), baselines=(), train_ablation=train, max_users=30)
    args = (Settings(), tiny_world / "items.jsonl", tiny_world / "events.jsonl", reg_dir, None)
    out = run_replay(*args, opts)
    assert list(out["systems"]) == [
        "streamrec",
        "no-diversity",
        "single-interest",
        "single-interest-no-div",
        "no-text",
    ]
    assert out["missing"] == {}
    versions = out["model"]["ablation_versions"]
    single, no_text = (reg.manifest(versions[k]) for k in ("single-interest", "no-text"))
    assert single["config"]["k"] == 1 and single["status"] == "ablation"
    assert no_text["config"]["use_text"] is False and no_text["config"]["k"] == 4
    main = reg.manifest(current)
    for m in (single, no_text):  # otherwise the same options, data and split
        for key in ("split", "d", "hidden", "epochs", "negatives", "seed"):
            assert m["training"][key] == main["training"][key], key
        assert m["training"]["data"]["events_sha256"] == main["training"]["data"]["events_sha256"]
    assert reg.current() == current  # serving untouched
    n_versions = len(reg.versions())
    again = run_replay(*args, ReplayOptions(ks=(10,), baselines=(), max_users=30))
    assert again["model"]["ablation_versions"] == versions and len(reg.versions()) == n_versions
    n = out["counts"]["scored_events"]
    assert all(row["examples"] == n for row in out["systems"].values())
    assert ablations.find_trained(reg, main, "no-text") == versions["no-text"]
