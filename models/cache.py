"""Shared, lazily loaded model handles.

`get(name)` loads a registered model on first use, exactly once even when many requests
arrive together, then returns the same object. Least-recently-used handles are dropped
when the count or memory budget is exceeded. Load counts are kept for tests and benchmarks.
"""
from __future__ import annotations

import functools
import gc
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import JobDropped, ModelUnavailable
from .registry import LoadContext, ModelSpec
from .settings import Settings

log = logging.getLogger(__name__)

ProgressFn = Callable[..., Any]


@dataclass
class LoadedModel:
    """What the Models panel shows about one resident handle."""

    name: str
    checkpoint: str
    handle: Any
    device: str
    nbytes: int
    load_seconds: float


class ModelCache:
    def __init__(self, specs: Mapping[str, ModelSpec], settings: Settings) -> None:
        self.specs = dict(specs)
        self.settings = settings
        self.load_counts: Counter[str] = Counter()
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}
        self._dependencies: dict[str, set[str]] = {}  # name -> handles its loader reused via context.get

    # ---- public API -------------------------------------------------------------------
    def get(self, name: str, progress: ProgressFn | None = None) -> Any:
        """The handle for `name`, loading it on first use. Raises `ModelUnavailable`."""
        spec = self._spec(name)
        hit = self._touch(name)
        if hit is not None:
            return hit.handle
        with self._name_lock(name):
            hit = self._touch(name)  # another thread may have loaded it while we waited
            if hit is not None:
                return hit.handle
            entry = self._load(spec, progress)
            with self._lock:
                self._loaded[name] = entry
                self._keep_dependencies_newer(name)
            self._enforce_budget(keep=name)
            return entry.handle

    def loaded(self) -> list[LoadedModel]:
        """Resident handles, least recently used first."""
        with self._lock:
            return list(self._loaded.values())

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._loaded

    def evict(self, name: str) -> None:
        with self._lock:
            self._loaded.pop(name, None)
        release_memory()

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()
        release_memory()

    def source_for(self, spec: ModelSpec) -> str:
        """Where the loader reads from: the hub repo id, or the tiny checkpoint folder."""
        if self.settings.profile == "hub":
            return spec.checkpoint
        return str(self._ensure_tiny_checkpoint(spec))

    # ---- internals --------------------------------------------------------------------
    def _spec(self, name: str) -> ModelSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise ModelUnavailable(
                f"Unknown model {name!r}. Registered models: {', '.join(sorted(self.specs))}."
            ) from None

    def _touch(self, name: str) -> LoadedModel | None:
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:
                self._loaded.move_to_end(name)
                self._keep_dependencies_newer(name)
            return entry

    def _keep_dependencies_newer(self, name: str) -> None:
        """Order a shared dependency (e.g. the SD base) after its dependents, so least-recently-used
        eviction drops the dependents first and never a base they still hold (a reload would copy it)."""
        for dependency in self._dependencies.get(name, ()):
            if dependency in self._loaded:
                self._loaded.move_to_end(dependency)

    def _name_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._name_locks.setdefault(name, threading.Lock())

    def _load(self, spec: ModelSpec, progress: ProgressFn | None) -> LoadedModel:
        from .device import module_nbytes, pick_device, pick_dtype

        if progress is not None:
            what = "tiny random weights" if self.settings.profile == "tiny" else (
                f"{spec.checkpoint}, about {spec.download_gb:g} GB on first download")
            progress(0.0, desc=f"Loading {spec.name} ({what})")
        device = pick_device()
        started = time.perf_counter()
        try:
            context = LoadContext(
                source=self.source_for(spec),
                revision=spec.revision if self.settings.profile == "hub" else None,
                device=device,
                dtype=pick_dtype(device),
                get=lambda dependency: self._get_dependency(spec.name, dependency, progress),
            )
            handle = spec.loader(context)
        except (ModelUnavailable, JobDropped):
            raise
        except Exception as error:  # network, auth, missing files, out of memory ...
            log.exception("loading %s failed", spec.name)
            raise ModelUnavailable(self._unavailable_message(spec, error)) from error
        elapsed = time.perf_counter() - started
        self.load_counts[spec.name] += 1
        log.info("loaded %s in %.1fs", spec.name, elapsed)
        return LoadedModel(spec.name, spec.checkpoint, handle, str(device), module_nbytes(handle), elapsed)

    def _get_dependency(self, name: str, dependency: str, progress: ProgressFn | None) -> Any:
        with self._lock:
            self._dependencies.setdefault(name, set()).add(dependency)
        return self.get(dependency, progress)

    def _unavailable_message(self, spec: ModelSpec, error: Exception) -> str:
        reason = f"{type(error).__name__}: {error}".strip()
        if len(reason) > 300:
            reason = reason[:300] + "…"
        if self.settings.profile == "tiny":
            return f"Could not build or load the tiny {spec.name} model: {reason}"
        revision = f" @ {spec.revision[:10]}" if spec.revision else ""
        return (
            f"Could not load {spec.name} from the Hugging Face Hub checkpoint "
            f"'{spec.checkpoint}'{revision} (about {spec.download_gb:g} GB). {reason}. "
            "Check your internet connection (and HF_TOKEN for gated models), or run offline "
            "with tiny random models: python app.py --models tiny"
        )

    def _enforce_budget(self, keep: str) -> None:
        """Drop least-recently-used handles until the count and GiB budgets hold."""
        max_count = self.settings.max_loaded_models
        max_bytes = self.settings.max_loaded_gib * 2**30
        dropped = False
        with self._lock:
            while len(self._loaded) > 1:
                over_count = max_count > 0 and len(self._loaded) > max_count
                over_bytes = max_bytes > 0 and sum(m.nbytes for m in self._loaded.values()) > max_bytes
                if not (over_count or over_bytes):
                    break
                oldest = next(name for name in self._loaded if name != keep)
                log.info("evicting %s to stay within the model budget", oldest)
                del self._loaded[oldest]
                dropped = True
        if dropped:
            release_memory()

    def _ensure_tiny_checkpoint(self, spec: ModelSpec) -> Path:
        """Build the tiny checkpoint once; later loads (and other processes) reuse the folder, as long
        as the code that builds it is the same (see `tiny_fingerprint`)."""
        target = self.settings.tiny_dir / tiny_fingerprint() / spec.name
        if (target / ".complete").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
        try:
            spec.tiny_builder(staging)
            (staging / ".complete").write_text(spec.checkpoint + "\n")
            try:
                os.replace(staging, target)
            except OSError:  # another process finished first, or a stale partial folder
                if not (target / ".complete").exists():
                    shutil.rmtree(target, ignore_errors=True)
                    os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


@functools.cache
def tiny_fingerprint() -> str:
    """A short hash of every source file of `models/` and of the libraries that write the tiny
    checkpoints. A tiny folder built by other code or library versions is never reused, so results
    do not depend on the tiny folder's history (a fresh PP_TINY_DIR gives the same weights)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    for package in ("torch", "diffusers", "transformers", "facenet-pytorch", "segment-anything", "onnx"):
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:12]


def release_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back, after dropping models or after an out-of-memory error."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a hard dependency of the app
        pass
