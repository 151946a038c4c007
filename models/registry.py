"""One table of every model the playground can load.

A row names the published checkpoint, its approximate download size, the loader that turns a
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


def _clip_specs() -> list[ModelSpec]:
    from . import loaders, tiny

    return [
        ModelSpec(
            name="clip-vit-base-patch32",
            checkpoint="openai/clip-vit-base-patch32",
            download_gb=0.6,
            loader=loaders.load_clip,
            tiny_builder=lambda folder: tiny.build_clip(folder, patch_size=32),
            description="CLIP ViT-B/32, 151M parameters",
        ),
        ModelSpec(
            name="clip-vit-large-patch14",
            checkpoint="openai/clip-vit-large-patch14",
            download_gb=1.7,
            loader=loaders.load_clip,
            tiny_builder=lambda folder: tiny.build_clip(folder, patch_size=14),
            description="CLIP ViT-L/14, 428M parameters",
        ),
    ]


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _clip_specs()}
