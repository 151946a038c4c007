"""One table of every model the playground can load.

A row (`ModelSpec`) names the published checkpoint, its approximate download size, the loader that turns a
folder or repo id into a ready handle, and the builder of a tiny random-initialised stand-in
with the same classes and file layout. Both profiles go through the same loader.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LoadContext:
    """Everything a loader needs; `get` loads another registered model to share its parts."""

    source: str  # hub repo id (hub profile) or local folder (tiny profile)
    revision: str | None
    device: "torch.device"
    dtype: "torch.dtype"
    get: Callable[[str], Any]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    checkpoint: str
    download_gb: float
    loader: Callable[[LoadContext], Any]
    tiny_builder: Callable[[Path], None]
    revision: str | None = None
    description: str = ""
    # The published weights are pickle files (no safetensors exist; read with torch.load's
    # weights_only=True); the tiny stand-in then uses the same format so one loader reads both.
    pickled: bool = False


def collect_registry() -> dict[str, ModelSpec]:
    """Every `SPECS` row of every module in this package: a new family is a new `models/<family>.py`."""
    import importlib
    import pkgutil

    package = importlib.import_module(__package__)
    specs: dict[str, ModelSpec] = {}
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.ispkg:
            continue
        for spec in getattr(importlib.import_module(f"{__package__}.{module.name}"), "SPECS", []):
            if spec.name in specs:
                raise ValueError(f"model name {spec.name!r} is registered twice")
            specs[spec.name] = spec
    return specs
