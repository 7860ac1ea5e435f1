"""``streamrec train`` as named steps: settings -> seed -> data -> encode -> examples ->
(encoder transfer) -> train -> test + baselines -> export (parity-gated) -> publish.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export import baselines_eval, checkpoint
from model_export.data import ItemSpace, SplitData, build_examples
from model_export.encoder import encode_texts, load_encoder, resolve_model_path, save_tokenizer
from model_export.export import export_encoder, export_item_tower, export_ranker
from model_export.modeling import MultiTaskRanker, RankerConfig
from model_export.registry import Registry
from model_export.train import EpochRow, TrainConfig, TrainResult, evaluate, train_ranker
from model_export.transfer import TransferStats, next_item_pairs, tune_encoder
from schemas.settings import Settings
from stream_app.core.catalog import NUM_FEATURES, item_numeric
from stream_app.core.interests import InterestParams
from stream_app.datagen.jsonl import load_events, load_items


@dataclass
class TrainOptions:
    split: str = "time"
    encoder_mode: str = "frozen"
    encoder_steps: int = 100
    d: int = 64
    hidden: int = 64
    recent_len: int = 20
    dropout: float = 0.1
    use_text: bool = True
    use_ids: bool = True
    test_max: int = 5000
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Hooks:
    """Progress callbacks (the CLI draws bars and tables with them)."""

    stage: Callable[[str], None] = lambda s: None
    progress: Callable[[str, int, int], None] = lambda name, done, total: None
    epoch: Callable[[EpochRow], None] = lambda row: None


def encoder_space_id(model_path: str) -> str:
    """Id of the pretrained encoder's vector space: hash of its weight/config/vocab files."""
    h = hashlib.sha256()
    root = Path(model_path)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix in (".safetensors", ".bin", ".json", ".txt", ".model"):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def load_space(settings: Settings, items_path: Path, hooks: Hooks) -> tuple[ItemSpace, Any, Any]:
    items = [it for it in load_items(items_path) if not it.deleted]
    encoder, tokenizer = load_encoder(settings.model_path)
    texts = [it.text() for it in items]
    hooks.stage(f"encoding {len(texts)} item texts with the pretrained encoder")
    vecs = encode_texts(encoder, tokenizer, texts,
                        on_progress=lambda n: hooks.progress("encode", n, len(texts)))  # fmt: skip
    text_vecs = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
    num = np.vstack([np.zeros((1, NUM_FEATURES), np.float32),
                     item_numeric([it.price for it in items])])  # fmt: skip
    space = ItemSpace([it.item_id for it in items], text_vecs, text_vecs,
                      [list(it.categories) for it in items], num)  # fmt: skip
    space.texts = texts  # type: ignore[attr-defined]
    return space, encoder, tokenizer


def run_training(
    settings: Settings,
    items_path: Path,
    events_path: Path,
    opts: TrainOptions,
    hooks: Hooks | None = None,
    registry_dir: Path | None = None,
    publish: bool = True,
    warm_start: str | None = None,
    make_current: bool = True,
    status: str = "published",
) -> dict[str, Any]:
    """Train, test against baselines and (optionally) publish a version.

    ``make_current=False`` publishes without serving it (ablations, gated candidates);
    ``status`` is recorded in the manifest ("published", "ablation", ...)."""
    hooks = hooks or Hooks()
    t_start = time.perf_counter()
    torch.manual_seed(opts.train.seed)
    model_path = resolve_model_path(settings.model_path)
    params = InterestParams.from_settings(settings.interests)
    space, encoder, tokenizer = load_space(settings, items_path, hooks)
    hooks.stage("loading events")
    events = load_events(events_path)
    events_sha = hashlib.sha256(Path(events_path).read_bytes()).hexdigest()
    hooks.stage(f"building examples from {len(events)} events ({opts.split} split)")
    data = build_examples(events, space, params, opts.recent_len, opts.split,
                          on_progress=lambda n: hooks.progress("replay", n, len(events)))  # fmt: skip
    data.meta["events_sha256"] = events_sha
    data.meta["events_file"] = str(events_path)
    data = _cap_test(data, opts.test_max, opts.train.seed)
    transfer = _transfer(opts, space, data, encoder, tokenizer, hooks)
    cfg = RankerConfig(text_dim=space.text_vecs.shape[1], d=opts.d, hidden=opts.hidden,
                       k=params.k, recent_len=opts.recent_len, n_items=space.n,
                       use_text=opts.use_text, use_ids=opts.use_ids, dropout=opts.dropout)  # fmt: skip
    init = None
    if warm_start is not None and registry_dir is not None:
        init = checkpoint.load_warm_start(Registry(registry_dir).path(warm_start), cfg, space)
    hooks.stage(f"training the ranker ({len(data.train)} examples, {space.n} items)")
    steps = max(1, -(-len(data.train) // opts.train.batch_size))
    result = train_ranker(cfg, opts.train, space, data.train, data.valid, init=init,
                          on_epoch=hooks.epoch,
                          on_step=lambda e, s: hooks.progress(f"epoch {e}", s, steps))  # fmt: skip
    hooks.stage(f"testing on {len(data.test)} held-out examples, with baselines")
    table = {"streamrec": evaluate(result.model, space, data.test)}
    table.update(baselines_eval.evaluate_baselines(space, data))
    report: dict[str, Any] = {
        "split": opts.split,
        "systems": table,
        "data": data.meta,
        "train": _train_summary(result),
        "transfer": asdict(transfer) if transfer else None,
    }
    if publish and registry_dir is not None:
        hooks.stage("exporting to ONNX (parity-gated) and publishing")
        report["version"], report["parity"] = _publish(
            Registry(registry_dir), result.model, cfg, space, data, encoder, tokenizer,
            model_path, params, opts, report, warm_start, make_current, status,
        )  # fmt: skip
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    return report


def _cap_test(data: SplitData, test_max: int, seed: int) -> SplitData:
    if len(data.test) <= test_max:
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data.test))[:test_max])
    data.meta["test_examples_scored"] = test_max
    return SplitData(data.train, data.valid, data.test.subset(idx), data.meta)


def _transfer(opts: TrainOptions, space: ItemSpace, data: SplitData, encoder: Any,
              tokenizer: Any, hooks: Hooks) -> TransferStats | None:  # fmt: skip
    if opts.encoder_mode == "frozen":
        return None
    import copy

    hooks.stage(f"transfer: fine-tuning the encoder ({opts.encoder_mode}, "
                f"{opts.encoder_steps} contrastive next-item steps)")  # fmt: skip
    tuned = copy.deepcopy(encoder)
    pairs = next_item_pairs(data.train.recent[:, 0], data.train.target)
    texts = [""] + space.texts  # type: ignore[attr-defined]
    stats = tune_encoder(tuned, tokenizer, texts, pairs, opts.encoder_mode, opts.encoder_steps,
                         seed=opts.train.seed,
                         on_step=lambda s, _l: hooks.progress("transfer", s, opts.encoder_steps))  # fmt: skip
    vecs = encode_texts(tuned, tokenizer, space.texts,  # type: ignore[attr-defined]
                        on_progress=lambda n: hooks.progress("re-encode", n, space.n))  # fmt: skip
    space.content_vecs = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
    space.tuned_encoder = tuned  # type: ignore[attr-defined]
    return stats


def _train_summary(result: TrainResult) -> dict[str, Any]:
    return {
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 1),
        "history": [{"epoch": r.epoch, "loss": round(r.loss, 4), "seconds": round(r.seconds, 1),
                     **{k: round(v, 4) for k, v in r.valid.items()}}
                    for r in result.history],  # fmt: skip
    }


def _publish(registry: Registry, model: MultiTaskRanker, cfg: RankerConfig, space: ItemSpace,
             data: SplitData, encoder: Any, tokenizer: Any, model_path: str,
             params: InterestParams, opts: TrainOptions, report: dict[str, Any],
             parent: str | None, make_current: bool = True,
             status: str = "published") -> tuple[str, dict[str, float]]:  # fmt: skip
    version, staging = registry.staging()
    texts = space.texts  # type: ignore[attr-defined]
    parity = {"encoder.onnx": export_encoder(encoder, tokenizer, texts, staging, version)}
    tuned = getattr(space, "tuned_encoder", None)
    if tuned is not None:
        parity["content_encoder.onnx"] = export_encoder(tuned, tokenizer, texts, staging, version,
                                                        file="content_encoder.onnx")  # fmt: skip
    ids = np.arange(space.n + 1, dtype=np.int64)
    parity["item_tower.onnx"] = export_item_tower(model, space.content_vecs, ids, space.num,
                                                  staging, version)  # fmt: skip
    parity["ranker.onnx"] = export_ranker(model, _ranker_sample(model, space, data), staging,
                                          version)  # fmt: skip
    save_tokenizer(tokenizer, staging / "tokenizer")
    checkpoint.save(staging, model, cfg, space, tuned)
    manifest = {
        "parent": parent,
        "space": encoder_space_id(model_path),
        "encoder": {"model_path": model_path, "dim": space.text_vecs.shape[1],
                    "mode": opts.encoder_mode,
                    "content_encoder": "content_encoder.onnx" if tuned is not None
                    else "encoder.onnx"},  # fmt: skip
        "config": json.loads(cfg.to_json()),
        "interest_params": asdict(params),
        "training": {**{k: v for k, v in asdict(opts).items() if k != "train"},
                     **asdict(opts.train), "data": data.meta},  # fmt: skip
        "metrics": {f"{system}.{name}": value for system, row in report["systems"].items()
                    for name, value in row.items()},  # fmt: skip
        "parity": parity,
    }
    return registry.publish(staging, manifest, make_current=make_current, status=status), parity


def _ranker_sample(model: MultiTaskRanker, space: ItemSpace, data: SplitData) -> dict[str, np.ndarray]:
    from model_export.train import batch_inputs

    ex = data.test if len(data.test) >= 4 else data.train
    idx = np.arange(min(8, len(ex)))
    with torch.no_grad():
        model.eval()
        feats = model.items(torch.from_numpy(space.content_vecs), torch.arange(space.n + 1),
                            torch.from_numpy(space.num))  # fmt: skip
        inputs = batch_inputs(feats, ex, idx)
        rng = np.random.default_rng(0)
        cand = torch.from_numpy(rng.integers(1, space.n + 1, size=(len(idx), 50)))
        inputs["cand"] = feats[cand]
    return {k: v.numpy().astype(np.float32) for k, v in inputs.items()}
