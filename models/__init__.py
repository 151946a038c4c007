"""Shared model handles: `models.get(name)` is the only way a demo reaches a model."""
from __future__ import annotations

import os
from typing import Any

# transformers starts a thread, at every load of a checkpoint published as a pickle, that asks the Hub (with
# no timeout) for a safetensors conversion and can open one: it kept a class's process from exiting behind a
# firewall. Every file a load reads is fetched beforehand (models/downloads.py), so it is switched off.
os.environ.setdefault("DISABLE_SAFETENSORS_CONVERSION", "1")
# huggingface_hub (1.x) asks the Hub for a list of "agent harnesses" (3 s timeout) the first time a process
# builds request headers, a cached load included, to name the agent in its user agent: a load of files on
# disk would touch the network (3 s lost behind a firewall). Telemetry off skips that, and says less about the machine.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

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
