"""Versions for the model ablations: one interest slot (``single-interest``) and item-id-only
item vectors (``no-text``), trained with otherwise the same options, data and split as the
model under evaluation. ``no-diversity`` needs no version (same model, selection off).

A version is taken, in order, from ``--ablation-version NAME=VERSION``, from an earlier
``--train-ablations`` run (a registry version with status ``ablation`` whose manifest matches),
or trained now when ``--train-ablations`` is given (``run_training(make_current=False,
status="ablation")``, so serving is untouched). Otherwise it is reported missing, never faked.
Training is the torch side's (``model_export.ablations.train``): the CLI injects it as an
``AblationTrainer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from schemas.manifest import Manifest
from schemas.settings import Settings
from stream_app.core.hooks import Hooks
from stream_app.registry import Registry

TRAINED = ("single-interest", "no-text")
KNOWN = (*TRAINED, "no-diversity")

_IGNORED = {"threads"}  # settings that do not change the model


def _signature(manifest: Manifest) -> dict[str, Any]:
    """What makes two versions the same experiment: training settings, data, K, encoder."""
    sig = manifest.training.settings.model_dump(exclude=_IGNORED)
    sig["events_sha256"] = manifest.training.data.events_sha256
    sig["k"] = manifest.engine.config.k
    sig["space"] = manifest.space
    return sig


def expected_signature(main: Manifest, kind: str) -> dict[str, Any]:
    sig = _signature(main)
    if kind == "single-interest":
        sig["k"] = 1
    elif kind == "no-text":
        sig["use_text"] = False
    else:
        msg = f"ablation: expected one of {TRAINED}, got {kind!r}"
        raise ValueError(msg)
    return sig


def kind_problem(manifest: Manifest, kind: str) -> str | None:
    """Why ``manifest`` is not a ``kind`` ablation (None when it is)."""
    cfg = manifest.engine.config
    if kind == "single-interest" and cfg.k != 1:
        return f"expected a model trained with k=1, got k={cfg.k}"
    use_text = getattr(cfg, "use_text", True)  # tower-v2 always reads the item text
    if kind == "no-text" and use_text is not False:
        return f"expected a model trained with use_text=false, got use_text={use_text}"
    return None


def find_trained(registry: Registry, main: Manifest, kind: str) -> str | None:
    """Newest registry version with status 'ablation' matching ``kind`` of the main model."""
    want = expected_signature(main, kind)
    for m in reversed(list(registry.manifests())):
        if m.status == "ablation" and _signature(m) == want:
            return m.version
    return None


class AblationTrainer(Protocol):
    """Train and publish (not current, status 'ablation') the ``kind`` ablation of the model
    described by ``main``, on the same data; returns its version."""

    def __call__(
        self,
        settings: Settings,
        registry_dir: Path,
        main: Manifest,
        kind: str,
        items_path: Path,
        events_path: Path,
        hooks: Hooks,
    ) -> str: ...
