"""Fixtures of the unit tier: ``tiny_registry`` here is a small version of the real model
trained on a tiny random BERT (``tiny_bert``: 2 layers, hidden 32, the MiniLM tokenizer), so
the contract tests exercise real exported ONNX graphs without the 87 MB encoder; a few real
versions made from it; and its catalogue. The engine, batch processing and replay logic are
tested against the numpy ``tests.fakes.FakeScorer`` instead (no model files at all)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.model_versions import (
    content_encoder,
    drop_text_hashes,
    invert_ranker,
    nan_ranker,
    publish_copy,
    train_registry,
)


@pytest.fixture(scope="session")
def tiny_registry(
    tmp_path_factory: pytest.TempPathFactory, tiny_world: Path, tiny_bert: str
) -> Path:
    """A registry with one small but really trained and exported ranker-v1 version (CURRENT),
    its encoder the tiny random BERT (the ranker-v1 contract tests; tower-v2's are in
    ``test_tower_serving`` / ``test_tower_export``; the integration tier serves tower-v2)."""
    return train_registry(
        tmp_path_factory.mktemp("registry"), tiny_world, model_path=tiny_bert, engine="ranker-v1"
    )


@dataclass(frozen=True)
class Versions:
    """A registry holding the tiny model (``v1``, CURRENT) and copies of it."""

    root: Path
    v1: str
    same: str  # identical files: same encoder, vectors reusable
    space2: str  # declares another pretrained encoder space: states and vectors must move
    tuned: str  # its own content encoder file: another encoder key, same interest space
    nan: str  # ranker outputs NaN: refused at warm-up
    inverted: str  # ranker ranks worst first (finite)
    legacy: str  # training vectors without text hashes
    tampered: str  # a file changed after publishing: refused by the sha256 check

    def model(self, name: str) -> Any:
        from stream_app.registry import Registry
        from stream_app.serving.model import ServingModel

        return ServingModel(Registry(self.root), getattr(self, name), "cpu", 1)


@pytest.fixture(scope="session")
def versions(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Versions:
    from stream_app.registry import Registry

    root = tmp_path_factory.mktemp("worker-registry") / "registry"
    shutil.copytree(tiny_registry, root, ignore=shutil.ignore_patterns(".lock", ".staging-*"))
    v1 = Registry(root).current()
    assert v1 is not None

    def copy(**kw: Any) -> str:
        return publish_copy(root, v1, False, **kw)

    tampered = copy()
    ranker = Registry(root).path(tampered) / "ranker.onnx"
    ranker.write_bytes(ranker.read_bytes()[:-64] + b"\0" * 64)
    encoder = Registry(root).manifest(v1).encoder
    return Versions(
        root,
        v1,
        same=copy(),
        space2=copy(encoder=encoder.model_copy(update={"space": f"{encoder.space}-other"})),
        tuned=copy(
            edit=content_encoder,
            encoder=encoder.model_copy(update={"content_encoder": "content_encoder.onnx"}),
        ),
        nan=copy(edit=nan_ranker),
        inverted=copy(edit=invert_ranker),
        legacy=copy(edit=drop_text_hashes),
        tampered=tampered,
    )


@pytest.fixture(scope="session")
def v1_model(versions: Versions) -> Any:
    return versions.model("v1")


@pytest.fixture(scope="session")
def world_items(tiny_world: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (tiny_world / "items.jsonl").read_text().splitlines() if x]
