"""The class preflight: for a set of models, what this machine already has and what it still needs.

`python app.py --check` reports, per model, whether its files for this device are cached, how many bytes
are still to download, its licence and whether the Hub gates it (HF_TOKEN), the memory it takes against
this machine's, and a verdict; `--download` fetches exactly those files. Neither loads a model, and
`--check` never touches the network (it reads the published file lists and the local cache).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from .cache import ModelCache
from .downloads import fetch, missing_bytes
from .errors import ModelUnavailable
from .hub import published
from .memory import budget_bytes, gib, machine_memory


@dataclass(frozen=True)
class CheckRow:
    model: str
    checkpoint: str  # repo id @ short revision, URL or pack
    licence: str
    access: str  # "open", "gated: HF_TOKEN set" / "gated: set HF_TOKEN", "bundled"
    to_download: int  # bytes of this device's files not cached here
    memory: int  # bytes the loaded model takes on this device
    verdict: str

    @property
    def ready(self) -> bool:
        return self.verdict == "ready"


def check(cache: ModelCache, names: list[str]) -> list[CheckRow]:
    """One row per model: cached or not, bytes to fetch, licence, access, memory and a verdict."""
    from .device import pick_device

    device = pick_device()
    total, _ = machine_memory(device.type)
    budget = budget_bytes(total, cache.settings.max_loaded_gib)
    return [_row(cache, name, budget) for name in names]


def _row(cache: ModelCache, name: str, budget: int) -> CheckRow:
    spec = cache.specs[name]
    download, dtype = cache.plan(spec)
    repo = published(spec.checkpoint) if download.kind == "hub" else None
    to_download = missing_bytes(download, cache.caches())
    if cache.settings.profile == "tiny":  # built as a whole, on first use or by --download
        to_download = 0 if cache.is_built(spec) else download.nbytes
    memory = cache.needed_bytes(spec, download, dtype)
    where = (f"{download.where} @ {download.revision[:7]}" if download.kind == "hub" else
             download.where.rsplit("/", 1)[-1])
    gated = bool(repo and repo.gated)
    access = ("bundled" if download.kind == "bundled" else
              f"gated: {'HF_TOKEN set' if os.environ.get('HF_TOKEN') else 'set HF_TOKEN'}" if gated else "open")
    if memory > budget:
        smaller = f" — use {spec.smaller}" if spec.smaller else ""
        verdict = f"will not fit here ({gib(memory)} > {gib(budget)} for models){smaller}"
    elif gated and not os.environ.get("HF_TOKEN") and to_download:
        verdict = "needs HF_TOKEN (accept the licence on the Hub first)"
    elif to_download:
        verdict = f"{'build' if cache.settings.profile == 'tiny' else 'download'} {to_download / 1e9:.2f} GB"
    else:
        verdict = "ready"
    licence = (repo.licence if repo else spec.licence) or "see its page"
    return CheckRow(name, where, licence, access, to_download, memory, verdict)


def render(rows: list[CheckRow], title: str) -> str:
    """A plain-text table for the terminal (and the README's class checklist)."""
    header = ("model", "checkpoint", "licence", "access", "to download", "memory", "verdict")
    lines = [[r.model, r.checkpoint, r.licence, r.access, f"{r.to_download / 1e9:.2f} GB", gib(r.memory), r.verdict]
             for r in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    out = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def machine_summary(cache: ModelCache) -> str:
    from .device import pick_device, pick_dtype

    device = pick_device()
    total, available = machine_memory(device.type)
    settings = cache.settings
    caches = cache.caches()
    return (f"This machine: {device.type.upper()} ({str(pick_dtype(device)).removeprefix('torch.')}), "
            f"{gib(total)} memory, {gib(available)} free now, {gib(budget_bytes(total, settings.max_loaded_gib))} "
            f"for models · profile {settings.profile}{' · offline' if settings.offline else ''} · safety checker "
            f"{'on' if settings.safety_checker else 'off'} · Hugging Face cache {caches.hub_folder()}")


def download(cache: ModelCache, names: list[str]) -> list[str]:
    """Fetch every file these models read on this device that is not cached yet; the failures, with why."""
    failures = []
    for name in names:
        spec = cache.specs[name]
        started = time.monotonic()
        try:
            if cache.settings.profile == "tiny":
                cache.build_tiny(spec)
            else:
                fetch(cache.plan(spec)[0], cache.caches(), _print_progress(name), label=spec.checkpoint)
        except (ModelUnavailable, OSError) as error:
            failures.append(f"{name}: {error}")
            print(f"\n{name}: FAILED — {error}", flush=True)
            continue
        print(f"\r{name}: done in {time.monotonic() - started:.0f} s".ljust(100), flush=True)
    return failures


def _print_progress(name: str):
    def report(fraction: float, desc: str = "") -> None:
        sys.stdout.write(f"\r{name}: {fraction:6.1%}  {desc}"[:120].ljust(120))
        sys.stdout.flush()
    return report
