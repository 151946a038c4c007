"""Shared model handles: `models.get(name)` is the only way a demo reaches a model."""
from __future__ import annotations

from typing import Any

from .cache import LoadedModel, ModelCache, ProgressFn
from .errors import JobDropped, ModelUnavailable, UserError
from .registry import LoadContext, ModelSpec, collect_registry
from .settings import PROFILES, Settings

REGISTRY = collect_registry()
model_settings = Settings()
model_cache = ModelCache(REGISTRY, model_settings)


def get(name: str, progress: ProgressFn | None = None) -> Any:
    """The shared handle for a registered model, loaded on first use."""
    return model_cache.get(name, progress)


__all__ = [
    "PROFILES", "REGISTRY", "JobDropped", "LoadContext", "LoadedModel", "ModelCache", "ModelSpec",
    "ModelUnavailable", "ProgressFn", "Settings", "UserError", "get", "model_cache", "model_settings",
]
