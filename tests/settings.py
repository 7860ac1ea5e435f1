"""Settings for tests (no tests here): the environment's settings with a test's overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.settings import Settings


def replay_settings(registry: Path, **replay: Any) -> Settings:
    """``settings.replay`` fields as keywords (``ks=(10,)``, ``max_users=30``, ...)."""
    return Settings().with_overrides(
        registry_dir=str(registry), **{f"replay.{k}": v for k, v in replay.items()}
    )
