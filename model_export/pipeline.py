"""``streamrec train`` as named steps: settings -> seed -> data -> encode -> examples ->
(encoder transfer) -> train -> test + baselines -> export (parity-gated) -> publish.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export import baselines_eval, checkpoint
from model_export.data import ItemSpace, SplitData, build_examples
from model_export.encoder import (
    encode_texts,
    encode_texts_cached,
    load_encoder,
    resolve_model_path,
    save_tokenizer,
)
from model_export.export import export_encoder, export_item_tower, export_ranker
from model_export.modeling import MultiTaskRanker, RankerConfig
from model_export.train import (
    Ranker,
    TrainConfig,
    TrainResult,
    batch_inputs,
    default_threads,
    evaluate,
    train_ranker,
)
from model_export.transfer import TransferStats, next_item_pairs, tune_encoder
from schemas.items import CatalogItem
from schemas.settings import Settings
from stream_app.core.catalogue import NUM_FEATURES, item_numeric
from stream_app.core.hooks import Hooks
from stream_app.core.interests import InterestParams
from stream_app.datagen.jsonl import load_events, load_items
from stream_app.registry import Registry


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


def encoder_space_id(model_path: str) -> str:
    """Id of the pretrained encoder's vector space: hash of its weight/config/vocab files."""
    h = hashlib.sha256()
    root = Path(model_path)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix in (".safetensors", ".bin", ".json", ".txt", ".model"):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def load_space(
    settings: Settings, items: list[CatalogItem], hooks: Hooks
) -> tuple[ItemSpace, Any, Any]:
    """Encode the live catalogue with the pretrained encoder (cached on disk by text)."""
    items = [it for it in items if not it.deleted]
    model_path = resolve_model_path(settings.model_path)
    encoder, tokenizer = load_encoder(model_path)
    texts = [it.text() for it in items]
    hooks.stage(f"encoding {len(texts)} item texts with the pretrained encoder (cached)")
    cache = settings.cache_dir / "text-vectors" / f"{encoder_space_id(model_path)}.npz"
    vecs = encode_texts_cached(
        encoder,
        tokenizer,
        texts,
        cache,
        on_progress=lambda n: hooks.progress("encode", n, len(texts)),
    )
    text_vecs = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
    num = np.vstack(
        [np.zeros((1, NUM_FEATURES), np.float32), item_numeric([it.price for it in items])]
    )
    space = ItemSpace(
        [it.item_id for it in items],
        text_vecs,
        text_vecs,
        [list(it.categories) for it in items],
        num,
        texts,
    )
    return space, encoder, tokenizer


@dataclass
class Prepared:
    """Everything a training round needs, built once: catalogue vectors and examples."""

    settings: Settings
    opts: TrainOptions
    space: ItemSpace
    encoder: Any
    tokenizer: Any
    data: SplitData
    params: InterestParams
    model_path: str
    transfer: TransferStats | None
    tuned_encoder: Any = None  # the encoder tuned by the transfer step (modes top-N, full)

    def ranker_config(self) -> RankerConfig:
        o = self.opts
        return RankerConfig(
            text_dim=self.space.text_vecs.shape[1],
            d=o.d,
            hidden=o.hidden,
            k=self.params.k,
            recent_len=o.recent_len,
            n_items=self.space.n,
            use_text=o.use_text,
            use_ids=o.use_ids,
            dropout=o.dropout,
        )


def prepare(
    settings: Settings,
    items: list[CatalogItem],
    events: list[Any],
    opts: TrainOptions,
    hooks: Hooks,
    source: dict[str, Any] | None = None,
) -> Prepared:
    """settings -> seed -> catalogue vectors -> examples (-> encoder transfer)."""
    torch.manual_seed(opts.train.seed)
    torch.set_num_threads(opts.train.threads or default_threads())
    params = InterestParams.from_settings(settings.interests)
    space, encoder, tokenizer = load_space(settings, items, hooks)
    hooks.stage(f"building examples from {len(events)} events ({opts.split} split)")
    data = build_examples(
        events,
        space,
        params,
        opts.recent_len,
        opts.split,
        on_progress=lambda n: hooks.progress("replay", n, len(events)),
    )
    data.meta.update(source or {})
    data = _cap_test(data, opts.test_max, opts.train.seed)
    transfer, tuned = _transfer(opts, space, data, encoder, tokenizer, hooks)
    return Prepared(
        settings,
        opts,
        space,
        encoder,
        tokenizer,
        data,
        params,
        resolve_model_path(settings.model_path),
        transfer,
        tuned,
    )


def fit(prep: Prepared, hooks: Hooks, init: MultiTaskRanker | None = None) -> TrainResult:
    hooks.stage(f"training the ranker ({len(prep.data.train)} examples, {prep.space.n} items)")
    steps = max(1, -(-len(prep.data.train) // prep.opts.train.batch_size))
    return train_ranker(
        prep.ranker_config(),
        prep.opts.train,
        prep.space,
        prep.data.train,
        prep.data.valid,
        init=init,
        on_epoch=hooks.epoch,
        on_step=lambda e, s: hooks.progress(f"epoch {e}", s, steps),
    )


def test_table(prep: Prepared, ranker: Ranker, baselines: bool = True) -> dict[str, Any]:
    table = {"streamrec": evaluate(ranker, prep.space, prep.data.test)}
    if baselines:
        table.update(baselines_eval.evaluate_baselines(prep.space, prep.data))
    return table


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
    hooks.stage("loading items and events")
    items = load_items(items_path)
    events = load_events(events_path)
    source = {
        "events_sha256": hashlib.sha256(Path(events_path).read_bytes()).hexdigest(),
        "events_file": str(events_path),
    }
    prep = prepare(settings, items, events, opts, hooks, source)
    init = None
    if warm_start is not None and registry_dir is not None:
        init = checkpoint.load_warm_start(
            Registry(registry_dir).path(warm_start), prep.ranker_config(), prep.space
        ).model
    result = fit(prep, hooks, init)
    hooks.stage(f"testing on {len(prep.data.test)} held-out examples, with baselines")
    report: dict[str, Any] = {
        "split": opts.split,
        "systems": test_table(prep, result.ranker),
        "data": prep.data.meta,
        "train": _train_summary(result),
        "transfer": asdict(prep.transfer) if prep.transfer else None,
    }
    if publish and registry_dir is not None:
        hooks.stage("exporting to ONNX (parity-gated) and publishing")
        report["version"], report["parity"] = publish_version(
            prep, result.ranker, report, Registry(registry_dir), warm_start, make_current, status
        )
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    return report


def _cap_test(data: SplitData, test_max: int, seed: int) -> SplitData:
    if len(data.test) <= test_max:
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data.test))[:test_max])
    data.meta["test_examples_scored"] = test_max
    return SplitData(data.train, data.valid, data.test.subset(idx), data.meta)


def _transfer(
    opts: TrainOptions,
    space: ItemSpace,
    data: SplitData,
    encoder: Any,
    tokenizer: Any,
    hooks: Hooks,
) -> tuple[TransferStats | None, Any]:
    """(stats, tuned encoder) of the transfer step, (None, None) when the encoder is frozen;
    the space's content vectors become the tuned encoder's."""
    if opts.encoder_mode == "frozen":
        return None, None
    import copy

    hooks.stage(
        f"transfer: fine-tuning the encoder ({opts.encoder_mode}, "
        f"{opts.encoder_steps} contrastive next-item steps)"
    )
    tuned = copy.deepcopy(encoder)
    pairs = next_item_pairs(data.train.recent[:, 0], data.train.target)
    texts = [""] + space.texts
    stats = tune_encoder(
        tuned,
        tokenizer,
        texts,
        pairs,
        opts.encoder_mode,
        opts.encoder_steps,
        seed=opts.train.seed,
        on_step=lambda s, _l: hooks.progress("transfer", s, opts.encoder_steps),
    )
    vecs = encode_texts(
        tuned,
        tokenizer,
        space.texts,
        on_progress=lambda n: hooks.progress("re-encode", n, space.n),
    )
    space.content_vecs = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
    return stats, tuned


def _train_summary(result: TrainResult) -> dict[str, Any]:
    return {
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 1),
        "history": [
            {
                "epoch": r.epoch,
                "loss": round(r.loss, 4),
                "seconds": round(r.seconds, 1),
                **{k: round(v, 4) for k, v in r.valid.items()},
            }
            for r in result.history
        ],
    }


def publish_version(
    prep: Prepared,
    ranker: Ranker,
    report: dict[str, Any],
    registry: Registry,
    parent: str | None,
    make_current: bool = True,
    status: str = "published",
    extra: dict[str, Any] | None = None,
) -> tuple[str, dict[str, float]]:
    """Export every graph (each parity-gated: ParityError aborts before anything is
    published), write tokenizer/weights/vectors, then publish atomically."""
    space, opts, cfg = prep.space, prep.opts, prep.ranker_config()
    model, tuned = ranker.model, prep.tuned_encoder
    version, staging = registry.staging()
    try:
        texts = space.texts
        parity = {
            "encoder.onnx": export_encoder(prep.encoder, prep.tokenizer, texts, staging, version)
        }
        if tuned is not None:
            parity["content_encoder.onnx"] = export_encoder(
                tuned, prep.tokenizer, texts, staging, version, file="content_encoder.onnx"
            )
        ids = np.arange(space.n + 1, dtype=np.int64)
        parity["item_tower.onnx"] = export_item_tower(
            model, space.content_vecs, ids, space.num, staging, version
        )
        parity["ranker.onnx"] = export_ranker(
            model, _ranker_sample(ranker, space, prep.data), staging, version
        )
        save_tokenizer(prep.tokenizer, staging / "tokenizer")
        checkpoint.save(staging, ranker, cfg, space)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest = {
        "parent": parent,
        "space": encoder_space_id(prep.model_path),
        "encoder": {
            "model_path": prep.model_path,
            "dim": space.text_vecs.shape[1],
            "mode": opts.encoder_mode,
            "content_encoder": "content_encoder.onnx" if tuned is not None else "encoder.onnx",
        },
        "config": {**json.loads(cfg.to_json()), "feat_dim": cfg.feat_dim},
        "interest_params": asdict(prep.params),
        "training": {
            **{k: v for k, v in asdict(opts).items() if k != "train"},
            **asdict(opts.train),
            "data": prep.data.meta,
        },
        "metrics": {
            f"{system}.{name}": value
            for system, row in report["systems"].items()
            for name, value in row.items()
        },
        "parity": parity,
        **(extra or {}),
    }
    return registry.publish(staging, manifest, make_current=make_current, status=status), parity


def _ranker_sample(ranker: Ranker, space: ItemSpace, data: SplitData) -> dict[str, np.ndarray]:
    model, covisit = ranker.model, ranker.covisit
    ex = data.test if len(data.test) >= 4 else data.train
    idx = np.arange(min(8, len(ex)))
    with torch.no_grad():
        model.eval()
        feats = model.items(
            torch.from_numpy(space.content_vecs),
            torch.arange(space.n + 1),
            torch.from_numpy(space.num),
        )
        inputs = batch_inputs(feats, ex, idx)
        rng = np.random.default_rng(0)
        cand_np = rng.integers(1, space.n + 1, size=(len(idx), 50))
        cand_np[:, 0] = ex.recent[idx, 0].clip(min=1)  # some candidates with co-visitation
        inputs["cand"] = feats[torch.from_numpy(cand_np)]
        inputs["cooc"] = torch.from_numpy(
            covisit.scores(ex.recent[idx], cand_np)
            if covisit
            else np.zeros(cand_np.shape, np.float32)
        )
    return {k: v.numpy().astype(np.float32) for k, v in inputs.items()}
