"""Fine-tuning job: buffer durability/bounds, the gate, and whole rounds on a drifting world."""

import json
import math
from pathlib import Path

import pytest

from model_export.finetune.rounds import gate
from stream_app.finetune.buffer import EventBuffer

torch = pytest.importorskip("torch")


def ev(i: int, ts_s: float, user: str = "u1", item: str = "i1") -> bytes:
    return json.dumps(
        {
            "event_id": f"e{i}",
            "event_type": "click",
            "user_id": user,
            "item_id": item,
            "ts": int(ts_s * 1000),
        }
    ).encode()


def test_buffer_keeps_the_window_samples_the_past_and_survives_reopen(tmp_path: Path):
    buf = EventBuffer(tmp_path / "b", window_s=100, reservoir=50, seed=1)
    assert buf.add([ev(i, 1000 + i) for i in range(400)]) == 400
    assert buf.add([b"not json", ev(399, 1399)]) == 1  # invalid skipped, duplicate id stored once
    st = buf.stats()
    assert st.recent == 101 and st.sampled == 50 and st.seen_old == 299
    events = buf.events()
    assert len(events) == 151 and [e.ts for e in events] == sorted(e.ts for e in events)
    assert {e.event_id for e in events} >= {f"e{i}" for i in range(299, 400)}
    mark = buf.watermark()
    buf.close()
    again = EventBuffer(tmp_path / "b", window_s=100, reservoir=50, seed=1)
    assert again.watermark() == mark and len(again.events()) == 151
    again.mark_round({"id": mark})
    assert again.meta["added_since_round"] == 0 and again.meta["rounds"][-1]["id"] == mark
    again.close()


def test_gate_tolerates_small_drops_and_refuses_real_ones():
    cur = {"ndcg@10": 0.30, "auc_click": 0.90, "auc_purchase": 0.60}
    assert gate({"ndcg@10": 0.295, "auc_click": 0.90, "auc_purchase": 0.61}, cur, 0.01) == []
    reasons = gate({"ndcg@10": 0.25, "auc_click": 0.95, "auc_purchase": 0.50}, cur, 0.01)
    assert len(reasons) == 2 and reasons[0].startswith("ndcg@10 0.2500 < current 0.3000 - 0.0100")
    assert gate({"ndcg@10": 0.31, "auc_click": 0.9, "auc_purchase": math.nan}, cur, 0.0) == []


@pytest.fixture(scope="module")
def drift_world(tmp_path_factory: pytest.TempPathFactory, tiny_bert: str):
    """Interests drift halfway; v1 is trained on the first half only (the tiny BERT encoder)."""
    from model_export.pipeline import run_training
    from schemas.settings import Settings
    from stream_app.datagen.synthetic import generate_world

    root = tmp_path_factory.mktemp("drift")
    generate_world(root, users=300, items=400, events=16000, seed=5, drift_at=0.5)
    lines = (root / "events.jsonl").read_text().splitlines()
    (root / "first.jsonl").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    (root / "second.jsonl").write_text("\n".join(lines[len(lines) // 2 :]) + "\n")
    reg = root / "registry"
    training = {"d": 32, "hidden": 32, "epochs": 4, "negatives": 32, "seed": 1}
    settings = Settings().with_overrides(
        model_path=tiny_bert, **{f"training.{k}": v for k, v in training.items()}
    )
    run_training(settings, root / "items.jsonl", root / "first.jsonl", registry_dir=reg)
    return root, reg, tiny_bert


def _round(root, reg, encoder, tmp, corrupt=False, tolerance=0.01, keep=1.0):
    from model_export.finetune.rounds import run_round
    from schemas.settings import Settings
    from stream_app.datagen.jsonl import load_items
    from stream_app.registry import Registry

    registry = Registry(reg)
    buf = EventBuffer(tmp, window_s=10 * 86400, reservoir=2000)
    lines = (root / "second.jsonl").read_bytes().splitlines()
    buf.add(lines[: int(len(lines) * keep)])
    # the architecture (d, hidden, ...) comes from CURRENT: run_round warm-starts from it
    training = {"epochs": 4, "negatives": 32, "seed": 2}
    settings = Settings().with_overrides(
        model_path=encoder, **{f"training.{k}": v for k, v in training.items()}
    )
    result = run_round(
        settings,
        registry,
        load_items(root / "items.jsonl"),
        buf.events(),
        tolerance,
        buf.watermark(),
        corrupt_labels=corrupt,
    )
    return registry, buf, result


@pytest.mark.slow
def test_round_on_drifted_data_beats_the_frozen_model_and_publishes(drift_world, tmp_path):
    root, reg, encoder = drift_world
    registry, buf, result = _round(root, reg, encoder, tmp_path / "b")
    assert result.decision == "published", result.reason
    assert result.candidate["ndcg@10"] > result.current["ndcg@10"]
    assert registry.current() == result.version and result.parent == "v0001"
    assert registry.manifest(result.version).parent == "v0001"
    # the same buffer again: recognised as the same round, nothing new published
    from model_export.finetune.rounds import run_round
    from schemas.settings import Settings

    again = run_round(Settings(), registry, [], [], 0.01, buf.watermark())
    assert again.decision == "skipped" and again.version == result.version
    assert registry.versions() == ["v0001", result.version]
    registry.rollback()  # leave v0001 current for the next test


@pytest.mark.slow
def test_shuffled_labels_are_refused_and_never_served(drift_world, tmp_path):
    root, reg, encoder = drift_world
    # other data than the published round (the same buffer would be skipped as a repeat)
    registry, _, result = _round(root, reg, encoder, tmp_path / "b", corrupt=True, keep=0.9)
    assert result.decision == "refused" and "ndcg@10" in result.reason
    assert registry.current() == "v0001"
    manifest = registry.manifest(result.version)
    assert manifest.status == "refused" and "ndcg@10" in (manifest.refused_reason or "")
    from stream_app.registry import RegistryError

    with pytest.raises(RegistryError):
        registry.promote(result.version)


def test_gate_allows_for_sampling_noise_but_not_real_drops():
    cur = {"ndcg@10": 0.30, "auc_click": 0.90, "auc_purchase": 0.60}
    noisy = {"ndcg@10": 0.30, "auc_click": 0.90, "auc_purchase": 0.55, "auc_purchase_se": 0.04}
    assert gate(noisy, cur, 0.01) == []  # 0.05 drop < 2 x 0.04
    worse = {**noisy, "auc_purchase": 0.45}
    assert gate(worse, cur, 0.01) == ["auc_purchase 0.4500 < current 0.6000 - 0.0800"]


def test_auc_standard_error_matches_hanley_mcneil():
    from model_export.train import auc_standard_error

    # A = 0.9, 50 positives / 50 negatives: Q1 = 0.9/1.1 = 0.81818, Q2 = 1.62/1.9 = 0.85263,
    # var = (0.09 + 49 (Q1 - 0.81) + 49 (Q2 - 0.81)) / 2500 = 0.0010319 -> SE = 0.03212
    assert abs(auc_standard_error(0.9, 50, 50) - 0.03212) < 1e-4
    assert auc_standard_error(0.9, 0, 50) != auc_standard_error(0.9, 0, 50)  # NaN


@pytest.mark.slow
def test_a_candidate_failing_onnx_parity_is_kept_refused_and_never_served(
    drift_world, tmp_path, monkeypatch
):
    """The export's parity gate refusing (forced here: the real check is tested in
    test_export_registry) ends the round as 'refused' with the weights kept for inspection."""
    from model_export.export import ParityError
    from model_export.finetune import rounds

    def parity_fails(*args, **kwargs):
        msg = "ranker.onnx: parity check failed (forced)"
        raise ParityError(msg)

    monkeypatch.setattr(rounds, "publish_version", parity_fails)  # ranker-v1
    monkeypatch.setattr(rounds.tower_publish, "publish_version", parity_fails)  # tower-v2
    root, reg, encoder = drift_world
    registry, _, result = _round(root, reg, encoder, tmp_path / "b", keep=0.8)
    assert result.decision == "refused" and "ONNX parity" in result.reason
    assert registry.current() == "v0001"
    manifest = registry.manifest(result.version)
    assert manifest.status == "refused" and "parity" in (manifest.refused_reason or "")
    assert (registry.path(result.version) / "manifest.json").exists()
