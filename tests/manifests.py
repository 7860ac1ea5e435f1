"""A small but complete ``ManifestDraft`` for registry tests that publish files of their own
(no model behind them: they test the registry, not serving). No tests here."""

from __future__ import annotations

from typing import Any

from schemas.manifest import (
    EncoderInfo,
    ManifestDraft,
    RankerConfigRecord,
    RankerEngine,
    TrainingData,
    TrainingRecord,
    TrainingWindow,
)
from schemas.settings import TrainingSettings


def draft(**changes: Any) -> ManifestDraft:
    base = ManifestDraft(
        parent=None,
        encoder=EncoderInfo(model_path="encoder/", dim=8, mode="frozen", space="space-a"),
        engine=RankerEngine(
            config=RankerConfigRecord(
                text_dim=8,
                num_dim=2,
                d=4,
                hidden=4,
                k=2,
                recent_len=3,
                n_items=5,
                use_text=True,
                use_ids=True,
                use_cooc=True,
                dropout=0.1,
                id_dropout=0.1,
                tasks=("click", "purchase"),
                task_weights={"click": 1.0, "purchase": 0.5},
                listwise_weight=1.0,
                retrieval_weight=0.5,
                purchase_loss="clicked",
                feat_dim=18,
            )
        ),
        training=TrainingRecord(
            settings=TrainingSettings(),
            data=TrainingData(
                split="time",
                events=10,
                users=2,
                window=TrainingWindow(start=0.0, end=10.0),
                train_until=8.0,
                train_examples=6,
                valid_examples=2,
                test_examples=2,
            ),
        ),
    )
    return base.model_validate({**base.model_dump(), **changes}) if changes else base
