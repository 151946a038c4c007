"""The tiny profile's Hugging Face cache: tiny checkpoints under the real repo ids, in the published layout.

A tiny builder writes its random-initialised model with the library's `save_pretrained` (safetensors, fp32,
the library's current file names). `publish` turns that build into the files a load reads from the published
repository (`hub.Download.files`): same names, same formats (`.bin` where the repository has only pickles,
`fp16` files only where published, shards with their index), and writes them into a cache laid out as
`huggingface_hub` writes it (`models--org--name/{refs/main, snapshots/<commit>/..., trees/<commit>.json}`),
with the repository's whole published file list as the cached tree listing. Loaders then read it through the
hub code path (`from_pretrained(repo_id, revision=..., local_files_only=True)`), the same as a real cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .hub import STANDARD_WEIGHTS, Download, Published, folder_of, published

if TYPE_CHECKING:
    from .downloads import Caches

SHARD = re.compile(r"-(\d{5})-of-(\d{5})")
TORCH_FORMATS = (".safetensors", ".bin")
SENTENCEPIECE_MODELS = ("tokenizer.model", "spiece.model")


class TinyLayoutError(RuntimeError):
    """A tiny build cannot produce a file that the published layout has and a load reads."""


def tiny_commit(repo: Published) -> str:
    """The commit the tiny snapshot is filed under: the pinned one, else a fixed stand-in for `main`."""
    return repo.commit or hashlib.sha1(f"paper-playground tiny {repo.repo}".encode()).hexdigest()


def storage_folder(hub_cache: Path, repo_id: str) -> Path:
    return hub_cache / ("models--" + repo_id.replace("/", "--"))


def snapshot_folder(hub_cache: Path, repo: Published) -> Path:
    return storage_folder(hub_cache, repo.repo) / "snapshots" / tiny_commit(repo)


def publish_tiny(build: Path, downloads: Iterable[Download], caches: "Caches") -> None:
    """File a tiny build into the tiny profile's caches, as each download would have left it."""
    for download in downloads:
        if download.kind == "hub":
            publish(build, published(download.where), download.files, caches.hub_folder())
        elif download.kind == "url":
            for name in download.files:
                _write_atomically(caches.torch_folder() / name, (build / name).read_bytes())
        elif download.kind == "pack":
            for path in (build / "models").rglob("*"):
                if path.is_file():
                    target = caches.insightface_folder() / path.relative_to(build)
                    _write_atomically(target, path.read_bytes())


def publish(build: Path, repo: Published, files: Iterable[str], hub_cache: Path) -> None:
    """Write `files` of `repo`, produced from the tiny `build`, into the hub-shaped `hub_cache`."""
    storage = storage_folder(hub_cache, repo.repo)
    snapshot = snapshot_folder(hub_cache, repo)
    for path in files:
        target = snapshot / path
        if not target.exists():
            _write_atomically(target, produce(build, path, repo, repo.config_overrides.get(path)))
    _write_atomically(storage / "refs" / "main", tiny_commit(repo).encode(), replace=False)
    tree = {"format_version": 1, "files": {path: {"size": size, "blob_id": hashlib.sha1(path.encode()).hexdigest()}
                                           for path, size in sorted(repo.files.items())}}
    _write_atomically(storage / "trees" / f"{tiny_commit(repo)}.json", json.dumps(tree, indent=1).encode(),
                      replace=False)


def _write_atomically(target: Path, data: bytes, replace: bool = True) -> None:
    if target.exists() and not replace:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.chmod(staging, 0o644)  # as huggingface_hub leaves its files, not mkstemp's 0600
    os.replace(staging, target)


def produce(build: Path, path: str, repo: Published, override: dict | None = None) -> bytes:
    """The bytes of published file `path`, made from the tiny build. A SentencePiece model is written empty:
    the tiny tokenizers have none, and where the published repositories carry one, the `tokenizer.json` beside
    it is what transformers reads (were the empty file ever read, loading it would fail, in a test)."""
    source = build / path
    name = Path(path).name
    if STANDARD_WEIGHTS.match(name):
        return _weights_file(build, path, repo)
    if source.exists():
        data = source.read_bytes()
    elif name in SENTENCEPIECE_MODELS:
        return b""
    elif ".ipynb_checkpoints/" in path:  # a notebook's autosave that diffusers fetches with its folder
        return b"{}"
    else:
        data = _tokenizer_file(build / folder_of(path), name)
    if override:
        data = json.dumps({**json.loads(data), **override}, indent=2).encode()
    return data


# ---- weights ----------------------------------------------------------------------------------------

def _weights_file(build: Path, path: str, repo: Published) -> bytes:
    """A weight file in the published name, format, precision and shard, from the build's tensors."""
    import torch

    tensors = _built_tensors(build / folder_of(path), path)
    name = Path(path).name
    if ".fp16" in name or path in repo.stored_half:
        tensors = {key: value.half() if value.is_floating_point() else value for key, value in tensors.items()}
    shard = SHARD.search(name)
    if re.search(r"\.index(\.fp16)?\.json$", name):  # `model.safetensors.index.fp16.json` too (IF's T5)
        return _index(tensors, name, _sibling_shards(repo, path))
    if shard:
        index, count = int(shard[1]), int(shard[2])
        tensors = {key: value for position, (key, value) in enumerate(sorted(tensors.items()))
                   if position % count == index - 1}
    return _serialise(tensors, name)


def _built_tensors(folder: Path, wanted: str) -> dict[str, Any]:
    """Every tensor the tiny build saved in `folder` (one standard weight file, or shards)."""
    import torch
    from safetensors.torch import load_file

    files = sorted(p for p in folder.glob("*") if STANDARD_WEIGHTS.match(p.name) and p.suffix in TORCH_FORMATS)
    if not files:
        raise TinyLayoutError(f"the tiny build has no weights in {folder.name or 'its root'} to write {wanted}")
    tensors: dict[str, Any] = {}
    for file in files:
        tensors |= load_file(file) if file.suffix == ".safetensors" else torch.load(file, weights_only=True)
    return {key: value.contiguous() for key, value in tensors.items()}


def _sibling_shards(repo: Published, index_path: str) -> list[str]:
    """The shard files an index file names: same folder and format (`model-0000N-of-0000M.safetensors`)."""
    form = ".safetensors" if ".safetensors.index" in index_path else ".bin"
    folder = folder_of(index_path)
    return sorted(p for p in repo.files if folder_of(p) == folder and SHARD.search(p) and p.endswith(form)
                  and (".fp16" in p) == (".fp16" in index_path))


def _index(tensors: dict[str, Any], name: str, shards: list[str]) -> bytes:
    ordered = sorted(tensors)
    weight_map = {key: Path(shards[position % len(shards)]).name for position, key in enumerate(ordered)}
    total = sum(value.numel() * value.element_size() for value in tensors.values())
    return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2).encode()


def _serialise(tensors: dict[str, Any], name: str) -> bytes:
    import io

    import torch
    from safetensors.torch import save

    if name.endswith(".safetensors"):
        return save(tensors, metadata={"format": "pt"})
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


# ---- tokenizer files the current library no longer writes --------------------------------------------

def _tokenizer_file(folder: Path, name: str) -> bytes:
    """Legacy tokenizer files of the published repositories (`vocab.json` + `merges.txt`, `vocab.txt`,
    `special_tokens_map.json`, `added_tokens.json`) from the `tokenizer.json` that the tiny build wrote."""
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.exists():
        raise TinyLayoutError(f"the tiny build has no {folder.name}/{name} and no tokenizer.json to make it from")
    spec = json.loads(tokenizer_json.read_text())
    model = spec["model"]
    if name == "vocab.json" and model["type"] == "BPE":
        return json.dumps(model["vocab"], ensure_ascii=False).encode()
    if name == "merges.txt" and model["type"] == "BPE":
        merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges", [])]
        return ("#version: 0.2\n" + "".join(f"{m}\n" for m in merges)).encode()
    if name == "vocab.txt" and model["type"] == "WordPiece":
        return "".join(f"{token}\n" for token, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])).encode()
    if name == "added_tokens.json":
        base = len(model.get("vocab", ()))
        return json.dumps({t["content"]: t["id"] for t in spec.get("added_tokens", []) if t["id"] >= base}).encode()
    if name == "special_tokens_map.json":
        from transformers import AutoTokenizer

        return json.dumps(AutoTokenizer.from_pretrained(folder).special_tokens_map, indent=2).encode()
    raise TinyLayoutError(f"the tiny build cannot write {folder.name}/{name}")
