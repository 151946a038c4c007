"""One table of every model the playground can load.

A row (`ModelSpec`) names the published checkpoint, the rule that picks the files one load reads from its
published file list (`models/published/`, see `hub.py`), the loader that turns those cached files into a
ready handle, and the builder of a tiny random-initialised stand-in with the same classes. Both profiles read
the same files through the same loader; only the cache they sit in differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .hub import Download, FileRule, folder_files

if TYPE_CHECKING:
    import torch

    from .downloads import Caches


@dataclass(frozen=True)
class LoadContext:
    """Everything a loader needs; `get` loads another registered model to share its parts."""

    source: str  # the hub repo id (or the URL / model pack name of a download outside the Hub)
    download: Download  # the files this load reads, with the variant and format they were chosen in
    caches: "Caches"
    device: "torch.device"
    dtype: "torch.dtype"
    get: Callable[[str], Any]
    safety_checker: bool = False  # SD pipelines load the published safety checker

    @property
    def revision(self) -> str | None:
        return self.download.revision

    def hub(self) -> dict[str, Any]:
        """Where `from_pretrained` finds the files: the pinned revision in this profile's cache, no network
        (the cache fetched them before the loader runs)."""
        return dict(revision=self.download.revision, cache_dir=self.caches.hub, local_files_only=True)

    def weights(self) -> dict[str, Any]:
        """`from_pretrained` arguments for weights: `hub()` plus dtype, the variant and the format chosen."""
        return dict(self.hub(), dtype=self.dtype, variant=self.download.variant,
                    use_safetensors=self.download.use_safetensors)

    def file(self, path: str) -> str:
        """The local path of one cached file of the repository."""
        from huggingface_hub import hf_hub_download

        return hf_hub_download(self.source, path, **self.hub())


@dataclass(frozen=True)
class ModelSpec:
    name: str
    checkpoint: str  # hub repo id, or a URL / model pack name for downloads outside the Hub
    loader: Callable[[LoadContext], Any]
    tiny_builder: Callable[[Path], None] | None  # None: the real weights ship in a package (no download)
    files: FileRule = field(default=folder_files())
    description: str = ""
    dtype: str | None = None  # always run in this dtype ("float32": compared pixel by pixel, or fp32 inputs)
    cpu_dtype: str | None = None  # on a CPU ("bfloat16": the 3-8B language models, half the memory of fp32)
    smaller: str | None = None  # a smaller registered model to suggest when this one cannot fit
    licence: str | None = None  # for downloads outside the Hub (a Hub repository's is in its published list)


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
