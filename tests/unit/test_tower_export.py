"""Engine tower-v2 end to end on the tiny world (tiny BERT): train -> export (parity-gated) ->
publish; the ONNX graphs against torch on fresh inputs; warm start; a fine-tuning round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from schemas.onnx_spec import HEADS, ITEM_TOWER, PARITY_ATOL, USER_TOWER  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from stream_app.registry import Registry  # noqa: E402

TOWER_FILES = {
    "encoder.onnx",
    "tokenizer",
    "item_tower.onnx",
    "user_tower.onnx",
    "heads.onnx",
    "item_index.json",
    "covisit.npz",
    "catalog_vectors.npz",
    "tower.pt",
    "manifest.json",
}


@pytest.fixture(scope="session")
def tower_registry(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path, tiny_bert: str):
    from tests.model_versions import train_registry

    root = tmp_path_factory.mktemp("tower-registry")
    return train_registry(root, tiny_world, model_path=tiny_bert, engine="tower-v2", threads=2)


def _settings(tiny_bert: str, **training: object) -> Settings:
    base = {"engine": "tower-v2", "d": 32, "epochs": 2, "negatives": 32, "seed": 3, **training}
    return Settings().with_overrides(
        model_path=tiny_bert, **{f"training.{k}": v for k, v in base.items()}
    )


def _torch_model(version_dir: Path):
    from model_export.tower.modeling import TowerConfig, TowerModel

    blob = torch.load(version_dir / "tower.pt", map_location="cpu", weights_only=True)
    model = TowerModel(TowerConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def test_version_has_every_file_manifest_parity_and_metrics(tower_registry: Path):
    reg = Registry(tower_registry)
    version = reg.current()
    assert version is not None
    vdir = reg.path(version)
    assert TOWER_FILES <= {p.name for p in vdir.iterdir()}
    m = reg.manifest(version)
    assert m.engine.kind == "tower-v2"
    cfg = m.engine.config
    assert cfg.feat_dim == cfg.d + 2 == 34 and cfg.k == 4 and cfg.layers == 1 and cfg.heads == 2
    assert m.engine.interests is not None and m.engine.interests.k == cfg.k
    for graph in ("encoder.onnx", ITEM_TOWER.file, USER_TOWER.file, HEADS.file):
        assert 0 <= m.parity[graph] <= PARITY_ATOL
    for name in ("ndcg@10", "hr@10", "auc_click", "auc_purchase"):
        assert np.isfinite(m.metrics[f"streamrec.{name}"])
        assert f"pop.{name}" in m.metrics and f"cooc.{name}" in m.metrics
    assert m.metrics["streamrec.ndcg@10"] > m.metrics["pop.ndcg@10"]
    ids = json.loads((vdir / "item_index.json").read_text())
    with np.load(vdir / "catalog_vectors.npz") as z:
        assert list(z["item_ids"]) == ids and z["content"].shape[0] == len(ids)
        assert {"text", "content", "num", "text_sha"} <= set(z.files)


def _session(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("b", "n"), [(1, 1), (3, 1), (3, 9)])
def test_onnx_graphs_equal_torch_on_fresh_inputs(tower_registry: Path, b: int, n: int):
    vdir = Registry(tower_registry).path(Registry(tower_registry).current() or "")
    model = _torch_model(vdir)
    cfg = model.cfg
    rng = np.random.default_rng(b * 10 + n)
    # item tower: fresh text vectors, known and unknown ids, prices
    text = rng.normal(size=(b * n + 4, cfg.text_dim)).astype(np.float32)
    ids = rng.integers(0, cfg.n_items + 1, text.shape[0]).astype(np.int64)
    ids[0] = 0
    num = rng.random((text.shape[0], cfg.num_dim)).astype(np.float32)
    item_feeds = {"text_vec": text, "id_index": ids, "item_num": num}
    (feats,) = _session(vdir / ITEM_TOWER.file).run(None, item_feeds)
    with torch.no_grad():
        expect = model.items(*(torch.from_numpy(v) for v in item_feeds.values())).numpy()
    assert feats.shape == (text.shape[0], cfg.feat_dim)
    assert np.abs(feats - expect).max() <= PARITY_ATOL
    # user tower: L <= recent_len, one user with no history when b > 1
    n_rec = cfg.recent_len - 2
    mask = (np.arange(n_rec)[None, :] < rng.integers(1, n_rec + 1, (b, 1))).astype(np.float32)
    if b > 1:
        mask[-1] = 0.0
    recent = feats[rng.integers(0, feats.shape[0], (b, n_rec))] * mask[..., None]
    user_feeds = {
        "recent": recent.astype(np.float32),
        "recent_mask": mask,
        "recent_kind": (rng.random((b, n_rec)) < 0.3).astype(np.int64) * mask.astype(np.int64),
        "recent_age": (rng.random((b, n_rec)) * 48).astype(np.float32) * mask,
    }
    got = _session(vdir / USER_TOWER.file).run(USER_TOWER.output_names, user_feeds)
    with torch.no_grad():
        want = model.user(*(torch.from_numpy(v) for v in user_feeds.values()))
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape) and np.isfinite(g).all()
        assert np.abs(g - w.numpy()).max() <= PARITY_ATOL
    interests, weights, attn, buy_prior = got
    assert interests.shape == (b, cfg.k, cfg.d) and attn.shape == (b, cfg.k, n_rec)
    # the purchase habit: log((purchases + 1) / (clicks + 1)) over the valid recent items
    bought = (user_feeds["recent_kind"] * mask).sum(1)
    assert np.allclose(buy_prior, np.log1p(bought) - np.log1p(mask.sum(1) - bought), atol=1e-5)
    # heads over N candidates
    cand = feats[rng.integers(0, feats.shape[0], (b, n))]
    heads_feeds = {
        "interests": interests,
        "weights": weights,
        "cand": cand.astype(np.float32),
        "cooc": rng.random((b, n)).astype(np.float32),
        "buy_prior": buy_prior,
    }
    got_h = _session(vdir / HEADS.file).run(HEADS.output_names, heads_feeds)
    with torch.no_grad():
        out = model.heads(*(torch.from_numpy(v) for v in heads_feeds.values()))
    for g, w in zip(got_h, (out.p_click, out.p_purchase, out.match), strict=True):
        assert g.shape == tuple(w.shape)
        assert np.abs(g - w.numpy()).max() <= PARITY_ATOL
    assert got_h[0].shape == (b, n) and got_h[2].shape == (b, n, cfg.k)


def test_warm_start_from_a_tower_version_and_a_config_mismatch_is_refused(
    tower_registry: Path, tiny_world: Path, tiny_bert: str, tmp_path: Path
):
    import shutil

    from model_export.pipeline import run_training

    root = tmp_path / "reg"
    shutil.copytree(tower_registry, root)
    parent = Registry(root).current()
    report = run_training(
        _settings(tiny_bert, epochs=1),
        tiny_world / "items.jsonl",
        tiny_world / "events.jsonl",
        registry_dir=root,
        warm_start=parent,
    )
    assert report.version is not None and report.version != parent
    child = Registry(root).manifest(report.version)
    assert child.parent == parent and child.engine.kind == "tower-v2"
    assert np.isfinite(report.systems["streamrec"]["ndcg@10"])
    with pytest.raises(ValueError, match=r"expected d=16, got d?=?32"):
        run_training(
            _settings(tiny_bert, d=16, epochs=1),
            tiny_world / "items.jsonl",
            tiny_world / "events.jsonl",
            registry_dir=root,
            warm_start=parent,
        )
    with pytest.raises(ValueError, match="tower_layers|layers=2"):
        run_training(
            _settings(tiny_bert, tower_layers=2, epochs=1),
            tiny_world / "items.jsonl",
            tiny_world / "events.jsonl",
            registry_dir=root,
            warm_start=parent,
        )


def test_a_finetune_round_keeps_the_tower_engine_of_current(
    tower_registry: Path, tiny_world: Path, tiny_bert: str, tmp_path: Path
):
    import shutil

    from model_export.finetune.rounds import options_from, run_round
    from stream_app.datagen.jsonl import load_events, load_items

    root = tmp_path / "reg"
    shutil.copytree(tower_registry, root)
    registry = Registry(root)
    parent = registry.current()
    # the round's own settings say ranker-v1 / d=64: the architecture comes from CURRENT
    base = Settings().with_overrides(
        model_path=tiny_bert, **{"training.epochs": 1, "training.negatives": 32}
    )
    opts = options_from(registry.manifest(parent or ""), base.training)
    assert (opts.engine, opts.d, opts.tower_layers) == ("tower-v2", 32, 1)
    events = load_events(tiny_world / "events.jsonl")
    result = run_round(
        base, registry, load_items(tiny_world / "items.jsonl"), events[-3000:], 0.5, "r-tower"
    )
    assert result.decision in ("published", "refused") and result.version is not None
    m = registry.manifest(result.version)
    assert m.engine.kind == "tower-v2" and m.parent == parent and m.round is not None
    assert "ndcg@10" in result.candidate and "ndcg@10" in result.current
