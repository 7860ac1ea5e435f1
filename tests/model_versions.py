"""Real model versions made from a trained one, for tests (no tests here): copies published
through the registry (hashes recomputed), optionally with a deliberate defect in a real file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from schemas.manifest import Status
from schemas.settings import Settings
from stream_app.registry import Registry


def publish_copy(
    registry: Path,
    source: str,
    make_current: bool,
    status: Status = "published",
    edit: Callable[[Path], None] | None = None,
    **manifest_changes: object,
) -> str:
    """Publish a new version whose files are ``source``'s (``edit(staging_dir)`` may change
    them first; ``manifest_changes`` override manifest fields). Bypasses any gate, on purpose."""
    return Registry(registry).copy_version(source, make_current, status, edit, **manifest_changes)


def _edit_ranker_outputs(version_dir: Path, op: str, constant: float) -> None:
    """Replace each probability output p of the scoring graph (ranker-v1's ranker, tower-v2's
    heads) by ``op(constant, p)``."""
    import onnx
    from onnx import TensorProto, helper

    path = version_dir / "ranker.onnx"  # ranker-v1; tower-v2 scores with its heads graph
    if not path.exists():
        path = version_dir / "heads.onnx"
    model = onnx.load(str(path))
    g = model.graph
    g.initializer.append(helper.make_tensor("test_const", TensorProto.FLOAT, [], [constant]))
    for name in ("p_click", "p_purchase"):
        raw = f"{name}_raw"
        for node in g.node:
            for i, o in enumerate(node.output):
                if o == name:
                    node.output[i] = raw
            for i, o in enumerate(node.input):
                if o == name:
                    node.input[i] = raw
        g.node.append(helper.make_node(op, ["test_const", raw], [name]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def invert_ranker(version_dir: Path) -> None:
    """A deliberately bad ranker: p_click and p_purchase become 1 - p (a sign bug), so the
    worst candidates rank first. Finite outputs: it passes the worker's warm-up."""
    _edit_ranker_outputs(version_dir, "Sub", 1.0)


def nan_ranker(version_dir: Path) -> None:
    """A ranker whose probabilities are all NaN (the worker's warm-up must refuse it)."""
    _edit_ranker_outputs(version_dir, "Mul", float("nan"))


def content_encoder(version_dir: Path) -> None:
    """Give the version its own content encoder file (as a tuned encoder would)."""
    (version_dir / "content_encoder.onnx").write_bytes((version_dir / "encoder.onnx").read_bytes())


def drop_text_hashes(version_dir: Path) -> None:
    """Rewrite the training vectors as versions wrote them before ``text_sha`` existed."""
    path = version_dir / "catalog_vectors.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "text_sha"}
    np.savez(path, **arrays)


def train_registry(
    root: Path, world: Path, model_path: str | None = None, **training: object
) -> Path:
    """Train one small version of the real model into a registry at ``root`` (CURRENT)."""
    from model_export.pipeline import run_training

    base = {"d": 32, "hidden": 32, "epochs": 2, "negatives": 32, "seed": 1, **training}
    settings = Settings().with_overrides(
        model_path=model_path, **{f"training.{k}": v for k, v in base.items()}
    )
    run_training(settings, world / "items.jsonl", world / "events.jsonl", registry_dir=root)
    return root
