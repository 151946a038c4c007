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
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .downloads import Caches, cached_path, fetch, missing_files
from .errors import JobDropped, ModelUnavailable
from .hub import Download, FileChoice
from .memory import budget_bytes, element_size, gib, machine_memory, needed_bytes
from .registry import LoadContext, ModelSpec
from .settings import Settings
from .tiny_hub import publish_tiny

if TYPE_CHECKING:
    import torch

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
    def __init__(self, specs: Mapping[str, ModelSpec], settings: Settings, caches: Caches | None = None,
                 files_for: str | None = None) -> None:
        """`caches` replaces the profile's caches (a test's view of one); `files_for="cuda"` loads the files
        and dtypes a GPU would, onto this machine's device (tests of the GPU's file choice on a CPU)."""
        self.specs = dict(specs)
        self.settings = settings
        self._caches = caches
        self.files_for = files_for
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

    def caches(self) -> Caches:
        """Where this profile's files live: the libraries' own caches (hub), or the tiny cache's folders."""
        if self._caches is not None:
            return self._caches
        if self.settings.profile == "hub":
            return Caches()
        root = self.settings.tiny_dir / tiny_fingerprint()
        return Caches(hub=root / "hub", torch_hub=root / "torch" / "hub" / "checkpoints",
                      insightface=root / "insightface")

    def dtype_for(self, spec: ModelSpec, device: "torch.device") -> "torch.dtype":
        """The spec's own dtype where it has one (a CPU may take a smaller one), else the device's."""
        import torch

        from .device import pick_dtype

        wanted = spec.dtype or (spec.cpu_dtype if device.type == "cpu" else None)
        return getattr(torch, wanted) if wanted else pick_dtype(device)

    def download_for(self, spec: ModelSpec, dtype: "torch.dtype", safety_checker: bool | None = None) -> Download:
        """The files one load of `spec` reads in `dtype` (fp16 takes the published `fp16` files)."""
        import torch

        choice = FileChoice(half=dtype == torch.float16,
                            safety_checker=self.settings.safety_checker if safety_checker is None else safety_checker)
        return spec.files(spec.checkpoint, choice)

    def plan(self, spec: ModelSpec, device: "torch.device | None" = None) -> tuple[Download, "torch.dtype"]:
        """What loading `spec` on `device` (default: this machine's) reads, and in which dtype."""
        import torch

        from .device import pick_device

        dtype = self.dtype_for(spec, torch.device(self.files_for) if self.files_for else device or pick_device())
        return self.download_for(spec, dtype), dtype

    def file_sizes(self, download: Download) -> dict[str, int]:
        """Bytes of each file of `download`: on disk where cached (the tiny cache's are tiny), else as published."""
        caches = self.caches()
        sizes = {}
        for path, size in download.files.items():
            found = cached_path(download, path, caches)
            sizes[path] = found.stat().st_size if found is not None and found.is_file() else size
        return sizes

    def needed_bytes(self, spec: ModelSpec, download: Download, dtype: "torch.dtype") -> int:
        """Memory the loaded model takes, weights and a run's margin."""
        return needed_bytes(download.resident_bytes(element_size(dtype), self.file_sizes(download)))

    def published_figures(self, spec: ModelSpec, device_type: str) -> tuple[int, int]:
        """(download bytes, memory bytes) of the published checkpoint on a CPU (fp32 files and weights, or
        the spec's CPU dtype) or a GPU (`fp16` files where published, fp16 weights)."""
        import torch

        dtype = self.dtype_for(spec, torch.device(device_type))
        download = self.download_for(spec, dtype)
        return download.nbytes, needed_bytes(download.resident_bytes(element_size(dtype)))

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
        from .device import module_nbytes, pick_device

        device = pick_device()
        download, dtype = self.plan(spec, device)
        if progress is not None:
            what = "tiny random weights" if self.settings.profile == "tiny" else (
                f"{spec.checkpoint}, {download.nbytes / 1e9:.2f} GB of files")
            progress(0.0, desc=f"Loading {spec.name} ({what})")
        started = time.perf_counter()
        try:
            if self.settings.profile == "tiny":
                self.build_tiny(spec)  # first: its size is the tiny files', not the published ones
            self._make_room(spec, self.needed_bytes(spec, download, dtype), dtype, device)
            self._ensure_files(spec, download, progress)  # after: nothing is fetched that cannot fit
            context = LoadContext(source=spec.checkpoint, download=download, caches=self.caches(), device=device,
                                  dtype=dtype, safety_checker=self.settings.safety_checker,
                                  get=lambda dependency: self._get_dependency(spec.name, dependency, progress))
            handle = spec.loader(context)
        except (ModelUnavailable, JobDropped):
            raise
        except Exception as error:  # network, auth, missing files, out of memory ...
            log.exception("loading %s failed", spec.name)
            raise ModelUnavailable(self._unavailable_message(spec, download, error)) from error
        elapsed = time.perf_counter() - started
        self.load_counts[spec.name] += 1
        log.info("loaded %s in %.1fs", spec.name, elapsed)
        return LoadedModel(spec.name, spec.checkpoint, handle, str(device), module_nbytes(handle), elapsed)

    def _ensure_files(self, spec: ModelSpec, download: Download, progress: ProgressFn | None) -> None:
        """The hub profile fetches what is missing, or, offline, says exactly what is missing and how to fetch
        it (the tiny cache is built before)."""
        if self.settings.profile == "tiny":
            return
        missing = missing_files(download, self.caches())
        if missing and self.settings.offline:
            raise ModelUnavailable(
                f"{spec.checkpoint} is not fully in this machine's cache ({sum(missing.values()) / 1e9:.2f} GB "
                f"missing: {', '.join(sorted(missing)[:3])}{' ...' if len(missing) > 3 else ''}) and the app "
                f"runs offline. On a network that reaches it, fetch it with: python app.py --download "
                f"--model {spec.name} (or work without checkpoints: python app.py --models tiny)")
        fetch(download, self.caches(), progress, label=spec.checkpoint)

    def _get_dependency(self, name: str, dependency: str, progress: ProgressFn | None) -> Any:
        with self._lock:
            self._dependencies.setdefault(name, set()).add(dependency)
        return self.get(dependency, progress)

    def _unavailable_message(self, spec: ModelSpec, download: Download, error: Exception) -> str:
        reason = f"{type(error).__name__}: {error}".strip()
        if len(reason) > 300:
            reason = reason[:300] + "…"
        if self.settings.profile == "tiny":
            return f"Could not build or load the tiny {spec.name} model: {reason}"
        revision = f" @ {download.revision[:10]}" if download.revision else ""
        return (
            f"Could not load {spec.name} from '{spec.checkpoint}'{revision} ({download.nbytes / 1e9:.2f} GB of "
            f"files for this device). {reason}. Check your internet connection (and HF_TOKEN for gated models), "
            "or run offline with tiny random models: python app.py --models tiny"
        )

    def _make_room(self, spec: ModelSpec, needed: int, dtype: "torch.dtype", device: "torch.device") -> None:
        """Unload least-recently-used models until `spec` fits the budget and the free memory; refuse with
        the sizes and a smaller choice if it cannot fit even then."""
        total, available = machine_memory(device.type)
        budget = budget_bytes(total, self.settings.max_loaded_gib)
        while self._resident_bytes() + needed > budget or needed > available:
            if not self._evict_oldest(keep=spec.name):
                break
            total, available = machine_memory(device.type)
        room = min(budget - self._resident_bytes(), available)
        if needed > room:
            raise ModelUnavailable(self._too_big_message(spec, needed, room, total, dtype, device))

    def _too_big_message(self, spec: ModelSpec, needed: int, room: int, total: int, dtype: "torch.dtype",
                         device: "torch.device") -> str:
        message = (f"{spec.name} ({spec.checkpoint}) does not fit on this machine: it needs about {gib(needed)} "
                   f"of memory in {str(dtype).removeprefix('torch.')} on the {device.type.upper()}, and "
                   f"{gib(max(room, 0))} is free for models ({gib(total)} in all, with the other models "
                   "unloaded).")
        if spec.smaller in self.specs:
            smaller = self.specs[spec.smaller]
            download, smaller_dtype = self.plan(smaller, device)
            message += (f" Choose {smaller.name} instead (about "
                        f"{gib(self.needed_bytes(smaller, download, smaller_dtype))}).")
        return message + " A GPU runs it in fp16, in half the memory of fp32; PP_MAX_LOADED_GIB sets the budget."

    def _resident_bytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._loaded.values())

    def _evict_oldest(self, keep: str) -> bool:
        """Unload the least recently used model other than `keep` and the models `keep` was built on."""
        kept = {keep, *self._dependencies.get(keep, ())}
        with self._lock:
            name = next((n for n in self._loaded if n not in kept), None)
            if name is None:
                return False
            log.info("unloading %s to make room", name)
            del self._loaded[name]
        release_memory()
        return True

    def _enforce_budget(self, keep: str) -> None:
        """After a load, drop least-recently-used handles until the count and memory budgets hold (a model
        may take more than its estimate)."""
        from .device import pick_device

        total, _ = machine_memory(pick_device().type)
        max_bytes = budget_bytes(total, self.settings.max_loaded_gib)
        while (0 < self.settings.max_loaded_models < len(self.loaded())) or self._resident_bytes() > max_bytes:
            if not self._evict_oldest(keep=keep):
                break

    def is_built(self, spec: ModelSpec) -> bool:
        return spec.tiny_builder is None or self._built_marker(spec).exists()

    def _built_marker(self, spec: ModelSpec) -> Path:
        return self.settings.tiny_dir / tiny_fingerprint() / "built" / spec.name

    def build_tiny(self, spec: ModelSpec) -> None:
        """Build the tiny checkpoint once and file it into the tiny cache under the spec's real repo id, in
        the published layout: every file a CPU or a GPU load reads, with the safety checker on or off. Later
        loads (and other processes) reuse it as long as the code that builds it is the same."""
        if self.is_built(spec):
            return
        marker = self._built_marker(spec)
        root = marker.parent.parent
        import torch
        from filelock import FileLock

        marker.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(marker) + ".lock"):
            if marker.exists():
                return
            with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=root) as build:
                spec.tiny_builder(Path(build))
                downloads = [self.download_for(spec, dtype, checker) for dtype in (torch.float32, torch.float16)
                             for checker in (False, True)]
                publish_tiny(Path(build), downloads, self.caches())
            marker.write_text(spec.checkpoint + "\n")


@functools.cache
def tiny_fingerprint() -> str:
    """A short hash of every source and published-layout file of `models/` and of the libraries that write the tiny
    checkpoints. A tiny folder built by other code or library versions is never reused, so results
    do not depend on the tiny folder's history (a fresh PP_TINY_DIR gives the same weights)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.json")]):
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
