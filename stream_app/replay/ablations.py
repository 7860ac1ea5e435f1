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

from schemas.settings import Settings
from stream_app.core.hooks import Hooks
from stream_app.registry import Registry

TRAINED = ("single-interest", "no-text")
KNOWN = (*TRAINED, "no-diversity")

_IGNORED = {"data", "threads"}


def _signature(manifest: dict[str, Any]) -> dict[str, Any]:
    training = manifest.get("training", {})
    sig = {k: v for k, v in training.items() if k not in _IGNORED}
    sig["events_sha256"] = training.get("data", {}).get("events_sha256")
    sig["k"] = manifest.get("config", {}).get("k")
    sig["space"] = manifest.get("space")
    return sig


def expected_signature(main: dict[str, Any], kind: str) -> dict[str, Any]:
    sig = _signature(main)
    if kind == "single-interest":
        sig["k"] = 1
    elif kind == "no-text":
        sig["use_text"] = False
    else:
        msg = f"ablation: expected one of {TRAINED}, got {kind!r}"
        raise ValueError(msg)
    return sig


def kind_problem(manifest: dict[str, Any], kind: str) -> str | None:
    """Why ``manifest`` is not a ``kind`` ablation (None when it is)."""
    cfg = manifest.get("config", {})
    if kind == "single-interest" and cfg.get("k") != 1:
        return f"expected a model trained with k=1, got k={cfg.get('k')}"
    if kind == "no-text" and cfg.get("use_text") is not False:
        return f"expected a model trained with use_text=false, got use_text={cfg.get('use_text')}"
    return None


def find_trained(registry: Registry, main: dict[str, Any], kind: str) -> str | None:
    """Newest registry version with status 'ablation' matching ``kind`` of the main model."""
    want = expected_signature(main, kind)
    for version in reversed(registry.versions()):
        m = registry.manifest(version)
        if m.get("status") == "ablation" and _signature(m) == want:
            return version
    return None


class AblationTrainer(Protocol):
    """Train and publish (not current, status 'ablation') the ``kind`` ablation of the model
    described by ``main``, on the same data; returns its version."""

    def __call__(
        self,
        settings: Settings,
        registry_dir: Path,
        main: dict[str, Any],
        kind: str,
        items_path: Path,
        events_path: Path,
        hooks: Hooks,
    ) -> str: ...
