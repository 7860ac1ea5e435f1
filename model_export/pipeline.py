"""``streamrec train`` as named steps: settings -> seed -> data -> encode -> examples ->
(encoder transfer) -> train -> test + baselines -> export (parity-gated) -> publish.

The options are ``settings.training`` (``schemas.settings.TrainingSettings``); the result is a
``schemas.reports.TrainingReport``.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export import baselines_eval, checkpoint
from model_export.data import ItemSpace, SplitData, build_examples
from model_export.encoder import (
    encode_texts,
    encode_texts_cached,
    encoder_space_id,
    load_encoder,
    resolve_model_path,
)
from model_export.modeling import MultiTaskRanker, RankerConfig
from model_export.publish import publish_version
from model_export.report import training_report
from model_export.tower import pipeline as tower_pipeline
from model_export.train import (
    Ranker,
    TrainResult,
    default_threads,
    evaluate,
    train_ranker,
)
from model_export.transfer import next_item_pairs, tune_encoder
from schemas.items import CatalogueItem
from schemas.manifest import Metrics, Status
from schemas.reports import TrainingReport, TransferStats
from schemas.settings import Settings, TrainingSettings
from stream_app.core.catalogue import NUM_FEATURES, item_numeric
from stream_app.core.hooks import Hooks
from stream_app.core.interests import InterestParams
from stream_app.datagen.jsonl import load_events, load_items
from stream_app.registry import Registry


def load_space(
    settings: Settings, items: list[CatalogueItem], hooks: Hooks
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
    space: ItemSpace
    encoder: Any
    tokenizer: Any
    data: SplitData
    params: InterestParams
    model_path: str
    transfer: TransferStats | None
    tuned_encoder: Any = None  # the encoder tuned by the transfer step (modes top-N, full)

    @property
    def opts(self) -> TrainingSettings:
        return self.settings.training

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
    items: list[CatalogueItem],
    events: list[Any],
    hooks: Hooks,
    **source: str,
) -> Prepared:
    """settings -> seed -> catalogue vectors -> examples (-> encoder transfer). ``source``
    (events_sha256, events_file, round) is recorded with the data."""
    opts = settings.training
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads or default_threads())
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
    meta = data.meta.model_validate({**data.meta.model_dump(), **source})
    data = _cap_test(SplitData(data.train, data.valid, data.test, meta), opts.test_max, opts.seed)
    transfer, tuned = _transfer(opts, space, data, encoder, tokenizer, hooks)
    return Prepared(
        settings,
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
    steps = max(1, -(-len(prep.data.train) // prep.opts.batch_size))
    return train_ranker(
        prep.ranker_config(),
        prep.opts,
        prep.space,
        prep.data.train,
        prep.data.valid,
        init=init,
        on_epoch=hooks.epoch,
        on_step=lambda e, s: hooks.progress(f"epoch {e}", s, steps),
    )


def test_table(prep: Prepared, ranker: Ranker, baselines: bool = True) -> dict[str, Metrics]:
    table = {"streamrec": evaluate(ranker, prep.space, prep.data.test)}
    if baselines:
        table.update(baselines_eval.evaluate_baselines(prep.space, prep.data))
    return table


def run_training(
    settings: Settings,
    items_path: Path,
    events_path: Path,
    hooks: Hooks | None = None,
    registry_dir: Path | None = None,
    publish: bool = True,
    warm_start: str | None = None,
    make_current: bool = True,
    status: Status = "published",
) -> TrainingReport:
    """Train with ``settings.training``, test against baselines and (optionally) publish.

    ``make_current=False`` publishes without serving it (ablations, gated candidates);
    ``status`` is recorded in the manifest ("published", "ablation", ...)."""
    hooks = hooks or Hooks()
    t_start = time.perf_counter()
    hooks.stage("loading items and events")
    items = load_items(items_path)
    events = load_events(events_path)
    sha = hashlib.sha256(Path(events_path).read_bytes()).hexdigest()
    prep = prepare(settings, items, events, hooks, events_sha256=sha, events_file=str(events_path))
    if prep.opts.engine == "tower-v2":
        return tower_pipeline.run(
            prep, hooks, registry_dir, publish, warm_start, make_current, status, t_start
        )
    init = None
    if warm_start is not None and registry_dir is not None:
        init = checkpoint.load_warm_start(
            Registry(registry_dir).path(warm_start), prep.ranker_config(), prep.space
        ).model
    result = fit(prep, hooks, init)
    hooks.stage(f"testing on {len(prep.data.test)} held-out examples, with baselines")
    systems = test_table(prep, result.ranker)
    version: str | None = None
    parity: Metrics = {}
    if publish and registry_dir is not None:
        hooks.stage("exporting to ONNX (parity-gated) and publishing")
        version, parity = publish_version(
            prep, result.ranker, systems, Registry(registry_dir), warm_start, make_current, status
        )
    return training_report(prep, systems, result, version, parity, t_start)


def _cap_test(data: SplitData, test_max: int, seed: int) -> SplitData:
    if len(data.test) <= test_max:
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data.test))[:test_max])
    meta = data.meta.model_copy(update={"test_examples_scored": test_max})
    return SplitData(data.train, data.valid, data.test.subset(idx), meta)


def _transfer(
    opts: TrainingSettings,
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
    hooks.stage(
        f"transfer: fine-tuning the encoder ({opts.encoder_mode}, "
        f"{opts.encoder_steps} contrastive next-item steps)"
    )
    tuned = copy.deepcopy(encoder)
    pairs = next_item_pairs(data.train.recent[:, 0], data.train.target)
    stats = tune_encoder(
        tuned,
        tokenizer,
        ["", *space.texts],
        pairs,
        opts.encoder_mode,
        opts.encoder_steps,
        seed=opts.seed,
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
