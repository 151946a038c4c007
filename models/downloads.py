"""Getting a load's files onto this machine, and knowing without the network whether they are here.

Every load first makes sure its files (`hub.Download`) are in the cache, then reads them with
`local_files_only=True`: a pinned commit whose files are cached never touches the network, so a class
behind a firewall (or `--offline`) loads what the teacher fetched the day before at once. Only missing
files reach for the network: a short probe first (a Hub that accepts connections and never answers is
reported within `PROBE_SECONDS`, by name), then `snapshot_download` of exactly those files, with progress read
off the bytes arriving on disk. A dropped connection is retried by huggingface_hub from its last chunk; a run
that gives up keeps the files that arrived, so running it again fetches only the rest (files on the Hub's Xet
storage also reuse hf_xet's chunk cache).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ModelUnavailable
from .hub import Download
from .tiny_hub import storage_folder

PROBE_SECONDS = 8.0  # a Hub that does not answer is reported well within 15 s
HTTP_TIMEOUT_SECONDS = 30.0  # every later request (metadata, download stream) has a finite timeout too
ProgressFn = Callable[..., Any]


@dataclass(frozen=True)
class Caches:
    """Where each kind of download lives. `None` means the library's own default (the hub profile)."""

    hub: Path | None = None  # Hugging Face cache (HF_HUB_CACHE layout)
    torch_hub: Path | None = None  # torch.hub checkpoints folder (FaceNet)
    insightface: Path | None = None  # insightface's root (~/.insightface, or PP_INSIGHTFACE_ROOT)

    def hub_folder(self) -> Path:
        from huggingface_hub import constants

        return Path(self.hub or constants.HF_HUB_CACHE)

    def torch_folder(self) -> Path:
        import torch

        return Path(self.torch_hub or Path(torch.hub.get_dir()) / "checkpoints")

    def insightface_folder(self) -> Path:
        return Path(self.insightface or os.environ.get("PP_INSIGHTFACE_ROOT") or Path("~/.insightface").expanduser())


class HubUnreachable(ModelUnavailable):
    """The Hub (or a download server) did not answer in time."""


def cached_path(download: Download, path: str, caches: Caches) -> Path | None:
    """Where one file of `download` is on this machine, or None."""
    if download.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(download.where, path, cache_dir=caches.hub_folder(),
                                       revision=download.revision)
        return Path(found) if isinstance(found, str) else None
    if download.kind == "url":
        candidate = caches.torch_folder() / path
    elif download.kind == "pack":
        candidate = caches.insightface_folder() / "models" / download.where / path
    else:
        return None
    return candidate if candidate.exists() else None


def missing_files(download: Download, caches: Caches) -> dict[str, int]:
    """The files (path → published bytes) of `download` that are not cached here."""
    if download.kind == "bundled":
        return {}
    return {path: size for path, size in download.files.items() if cached_path(download, path, caches) is None}


def missing_bytes(download: Download, caches: Caches) -> int:
    """Bytes still to fetch: the missing files, or the whole archive of a pack with a member missing."""
    missing = missing_files(download, caches)
    if download.kind == "pack" and missing:
        return download.nbytes
    return sum(missing.values())


def limit_network_waits() -> None:
    """Give every Hub request a finite timeout (huggingface_hub's default client waits forever)."""
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import hf_request_event_hook

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(HTTP_TIMEOUT_SECONDS)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(HTTP_TIMEOUT_SECONDS)))
    set_client_factory(lambda: httpx2.Client(event_hooks={"request": [hf_request_event_hook]},
                                             follow_redirects=True, timeout=HTTP_TIMEOUT_SECONDS))


def probe_hub(download: Download, timeout: float = PROBE_SECONDS) -> None:
    """Ask the Hub about the repository once, briefly: unreachable, gated or missing says so by name."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().model_info(download.where, revision=download.revision, timeout=timeout)
    except GatedRepoError as error:
        raise ModelUnavailable(
            f"{download.where} is gated: accept its licence on https://huggingface.co/{download.where} and set "
            f"HF_TOKEN to a token of that account ({type(error).__name__}).") from error
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ModelUnavailable(f"The Hub has no {download.where} at revision {download.revision} "
                               f"({type(error).__name__}).") from error
    except Exception as error:  # connect/read timeouts, refused connections, DNS, proxies
        raise HubUnreachable(
            f"Cannot reach the Hugging Face Hub at {constants.ENDPOINT} (no answer within {timeout:g} s: "
            f"{type(error).__name__}).") from error


def fetch(download: Download, caches: Caches, progress: ProgressFn | None = None, label: str = "") -> None:
    """Download the missing files of `download`, reporting progress by bytes on disk."""
    missing = missing_files(download, caches)
    if not missing:
        return
    limit_network_waits()
    total = download.nbytes if download.kind == "pack" else sum(missing.values())
    with _progress_from_disk(_watched_folder(download, caches), total, progress, label or download.where):
        if download.kind == "hub":
            probe_hub(download)
            _fetch_hub(download, sorted(missing), caches.hub_folder())
        elif download.kind == "url":
            _fetch_url(download.where, caches.torch_folder() / next(iter(missing)))
        elif download.kind == "pack":
            _fetch_pack(download.where, caches.insightface_folder())


def _fetch_hub(download: Download, files: list[str], hub_cache: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(download.where, revision=download.revision, cache_dir=hub_cache, allow_patterns=files,
                          etag_timeout=HTTP_TIMEOUT_SECONDS, max_workers=4)
    except Exception as error:  # a dropped connection after the library's own retries, a full disk, ...
        raise HubUnreachable(f"The download of {download.where} stopped ({type(error).__name__}: {error}). The "
                             "files that arrived are kept: the same command resumes it with the rest.") from error


def _fetch_url(url: str, target: Path) -> None:
    """One file over plain HTTP(S) into `target`, every wait bounded (torch.hub's and insightface's own
    downloaders have no timeout): a server that stops answering is reported, a partial file never kept."""
    import shutil
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".incomplete")
    try:
        with urllib.request.urlopen(url, timeout=PROBE_SECONDS) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        partial.replace(target)
    except OSError as error:  # URLError, timeouts, refused connections, a full disk
        partial.unlink(missing_ok=True)
        raise HubUnreachable(f"Cannot download {url} (no answer within {PROBE_SECONDS:g} s, or the transfer "
                             f"stopped: {type(error).__name__}: {error}).") from error


def _fetch_pack(name: str, root: Path) -> None:
    """insightface's model pack: its zip from insightface's release URL, unpacked where insightface's
    `FaceAnalysis` looks (`<root>/models/<name>/`), as its own downloader does."""
    import zipfile

    from insightface.utils.storage import model_zoo_download_url

    archive = root / "models" / f"{name}.zip"
    _fetch_url(model_zoo_download_url(f"{name}.zip"), archive)
    with zipfile.ZipFile(archive) as packed:
        packed.extractall(root / "models" / name)
    archive.unlink()


def _watched_folder(download: Download, caches: Caches) -> Path:
    if download.kind == "hub":
        return storage_folder(caches.hub_folder(), download.where)
    return caches.torch_folder() if download.kind == "url" else caches.insightface_folder()


class _progress_from_disk:
    """Report `bytes on disk / total` every half second while a download runs (any downloader, any file)."""

    def __init__(self, folder: Path, total: int, progress: ProgressFn | None, label: str) -> None:
        self.folder, self.total, self.progress, self.label = folder, max(total, 1), progress, label
        self.stop = threading.Event()
        self.start_bytes = 0

    def _bytes(self) -> int:
        if not self.folder.exists():
            return 0
        return sum(path.stat().st_size for path in self.folder.rglob("*") if path.is_file() and not path.is_symlink())

    def _report(self) -> None:
        while not self.stop.wait(0.5):
            done = min(max(self._bytes() - self.start_bytes, 0), self.total)
            try:
                self.progress(done / self.total, desc=f"Downloading {self.label}: {done / 1e9:.2f} of "
                                                      f"{self.total / 1e9:.2f} GB")
            except Exception:  # the request was dropped: the download itself goes on for the next one
                return

    def __enter__(self) -> "_progress_from_disk":
        if self.progress is not None:
            self.start_bytes = self._bytes()
            self.progress(0.0, desc=f"Downloading {self.label}: {self.total / 1e9:.2f} GB")
            threading.Thread(target=self._report, daemon=True, name="download-progress").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
