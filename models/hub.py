"""The published checkpoints as data, and the exact files one load reads from them.

`models/published/<org>--<name>.json` is a repository's file list (path → bytes) at a named commit, read from
stored copies of the Hub's tree pages (each file says where, and whether the listing was seen or inferred).
A spec's file rule (`pipeline_files`, `folder_files`, `named_files`, ...) picks from it the files one load
reads for a device's `FileChoice`: `fp16` files only where the repository publishes them, safetensors where
every part has them and otherwise the pickles (which diffusers, transformers and our loaders read with
`weights_only=True`). That one list is what `--check` sizes, `--download` fetches, the hub-shaped tiny cache
holds and the loaders read with `local_files_only=True` — so a loader asking for a file the repository lacks
fails offline, in a test, exactly as it would on the Hub.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".pb")
# The weight file names diffusers and transformers read (`diffusion_pytorch_model.fp16.safetensors`,
# `model-00001-of-00002.safetensors`, `pytorch_model.bin.index.json`, ...).
STANDARD_WEIGHTS = re.compile(
    r"^(diffusion_pytorch_model|model|pytorch_model)(?P<variant>\.fp16)?(-\d{5}-of-\d{5})?"
    r"\.(?P<format>safetensors|bin)(\.index(\.fp16)?\.json)?$")
SHARDED = re.compile(r"-\d{5}-of-\d{5}")
LIBRARY_FILES = re.compile(
    r"^((generation_|preprocessor_|processor_|tokenizer_|video_preprocessor_)?config|special_tokens_map|added_tokens"
    r"|model_index|scheduler_config|chat_template)\.json$"
    r"|^(tokenizer\.json|vocab\.(json|txt)|merges\.txt|tokenizer\.model|spiece\.model|chat_template\.jinja)$")
# What diffusers fetches at a pipeline repository's root besides model_index.json (flat one-model repos).
PIPELINE_ROOT_FILES = {"model_index.json", "config.json", "scheduler_config.json", "preprocessor_config.json",
                       "tokenizer.json", "tokenizer_config.json", "generation_config.json", "processor_config.json"}


@dataclass(frozen=True)
class Published:
    """One repository as published: its files at `commit` and what its page says about access."""

    repo: str
    commit: str | None  # the full sha the listing was read at; None where no page showed one
    files: dict[str, int]
    verified: bool  # the listing was seen on a stored tree page (not inferred)
    licence: str | None = None
    gated: bool = False
    read_from: tuple[str, ...] = ()
    notes: str = ""
    stored_half: frozenset[str] = frozenset()  # weight files stored in fp16 without an `fp16` name
    # Keys of small JSON files as published (e.g. a processor class), for the tiny stand-in to carry
    config_overrides: dict[str, dict] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        """What loads pin: the commit where one is known, else the default branch."""
        return self.commit or "main"


@functools.cache
def published(repo: str) -> Published:
    """The manifest of `repo` (raises `KeyError` for a repository nobody has listed)."""
    path = PUBLISHED_DIR / (repo.replace("/", "--") + ".json")
    if not path.exists():
        raise KeyError(f"no published file list for {repo!r} in {PUBLISHED_DIR}")
    data = json.loads(path.read_text())
    return Published(
        repo=data["repo"], commit=data.get("commit"), files=dict(data["files"]), verified=bool(data["verified"]),
        licence=data.get("licence"), gated=bool(data.get("gated")), read_from=tuple(data.get("read_from", ())),
        notes=data.get("notes", ""), stored_half=frozenset(data.get("stored_half", ())),
        config_overrides=data.get("config_overrides", {}))


@dataclass(frozen=True)
class FileChoice:
    """Which of a repository's files this machine reads."""

    half: bool  # fp16 weights (CUDA, MPS): `fp16` variant files where published
    safety_checker: bool = False  # SD pipelines load their published safety checker

    @property
    def label(self) -> str:
        return "GPU files (fp16)" if self.half else "CPU files (fp32)"


CPU_FILES, GPU_FILES = FileChoice(half=False), FileChoice(half=True)


@dataclass(frozen=True)
class Download:
    """What one load reads: from the Hub (`repo`), a URL, a model pack, or nothing (weights in a wheel)."""

    kind: str  # "hub" | "url" | "pack" | "bundled"
    where: str  # repo id, URL, pack name, or what is bundled
    files: dict[str, int] = field(default_factory=dict)  # path → bytes, as published
    revision: str | None = None
    variant: str | None = None  # "fp16" where the load reads fp16 variant files
    use_safetensors: bool | None = None  # True where every weight is safetensors; None lets pickles load
    stored_half: frozenset[str] = frozenset()
    archive_bytes: int | None = None  # a pack fetched as one archive: its size, not its members'

    @property
    def nbytes(self) -> int:
        """Bytes to fetch."""
        return self.archive_bytes if self.archive_bytes is not None else sum(self.files.values())

    def resident_bytes(self, element_size: int, sizes: dict[str, int] | None = None) -> int:
        """The weights' bytes once loaded with `element_size` bytes per number (fp32 4, fp16 2). `sizes`
        replaces published sizes with those on disk (the tiny cache)."""
        total = 0
        for path, size in (sizes or self.files).items():
            if path.endswith(WEIGHT_SUFFIXES):
                stored = 2 if (".fp16" in Path(path).name or path in self.stored_half) else 4
                total += size * element_size // stored
        return total


FileRule = Callable[[str, FileChoice], Download]  # (checkpoint, choice) -> the files one load reads


def is_weight(path: str) -> bool:
    return path.endswith(WEIGHT_SUFFIXES)


def folder_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _in_folder(repo: Published, folder: str) -> dict[str, int]:
    return {path: size for path, size in repo.files.items() if folder_of(path) == folder}


def _standard(path: str) -> re.Match | None:
    return STANDARD_WEIGHTS.match(Path(path).name)


def _choose_weights(files: dict[str, int], half: bool, form: str | None) -> dict[str, int]:
    """One folder's weights as a library reads them: the `fp16` variant on `half` where there is one, in
    `form` (safetensors or bin; None: safetensors if present), shards with their index."""
    standard = {path: match for path in files if (match := _standard(path))}
    # `model.fp16-0000N-of-0000M.safetensors` and its index `model.safetensors.index.fp16.json` (T5 in DeepFloyd IF)
    variants = {path for path in standard if ".fp16" in Path(path).name}
    wanted = variants if (half and variants) else set(standard) - variants
    forms = {standard[path]["format"] for path in wanted}
    form = form or ("safetensors" if "safetensors" in forms else "bin")
    chosen = {path for path in wanted if standard[path]["format"] == form}
    if not any(SHARDED.search(path) for path in chosen):
        chosen = {path for path in chosen if not path.endswith(".index.json")}
    return {path: files[path] for path in sorted(chosen)}


def _read_by_library(files: dict[str, int]) -> dict[str, int]:
    """The configuration and tokenizer files transformers and diffusers read for one model."""
    return {path: size for path, size in files.items() if LIBRARY_FILES.match(Path(path).name)}


def _hub(repo: Published, files: dict[str, int], half: bool) -> Download:
    weights = [path for path in files if is_weight(path)]
    variant = "fp16" if half and any(".fp16" in Path(p).name for p in weights) else None
    all_safetensors = bool(weights) and all(path.endswith(".safetensors") for path in weights)
    return Download("hub", repo.repo, dict(sorted(files.items())), repo.revision, variant,
                    True if all_safetensors else None, repo.stored_half & set(files))


def pipeline_files(*skip: str) -> FileRule:
    """A diffusers pipeline's `from_pretrained`, as its download step picks files: model_index.json; in
    each model folder its config.json and weights (one format for the whole pipeline: safetensors only if
    every model folder has them), in every other component folder all of its files. The safety checker is
    read only when it is on; `skip` names components the loader passes itself."""
    def rule(checkpoint: str, choice: FileChoice) -> Download:
        repo = published(checkpoint)
        skipped = set(skip) | ({"safety_checker"} if not choice.safety_checker else set())
        components = sorted({path.split("/", 1)[0] for path in repo.files if "/" in path} - skipped)
        model_folders = ["", *components] if any(_standard(p) for p in _in_folder(repo, "")) else components
        model_folders = [f for f in model_folders if any(_standard(p) for p in _in_folder(repo, f))]
        chosen = {f: _choose_weights(_in_folder(repo, f), choice.half, None) for f in model_folders}
        form = "safetensors" if all(any(p.endswith(".safetensors") for p in w) for w in chosen.values()) else "bin"
        files = {path: size for path, size in _in_folder(repo, "").items() if path in PIPELINE_ROOT_FILES}
        for folder in components:
            if folder not in model_folders:
                files |= {path: size for path, size in repo.files.items() if path.startswith(folder + "/")}
        for folder in model_folders:
            files |= {path: size for path, size in _in_folder(repo, folder).items()
                      if Path(path).name == "config.json"}
            files |= _choose_weights(_in_folder(repo, folder), choice.half, form)
        return _hub(repo, files, choice.half)
    return rule


def folder_files(*folders: str) -> FileRule:
    """Models read folder by folder (`ModelMixin`/transformers `from_pretrained(repo, subfolder=...)`): each
    folder's configuration and tokenizer files and its weights; the `fp16` variant only where every weight
    folder has one (one `variant` argument serves all of them)."""
    def rule(checkpoint: str, choice: FileChoice) -> Download:
        repo = published(checkpoint)
        wanted = folders or ("",)
        contents = {f: _in_folder(repo, f) for f in wanted}
        weight_folders = [f for f in wanted if any(_standard(p) for p in contents[f])]
        half = choice.half and all(any(_standard(p) and _standard(p)["variant"] for p in contents[f])
                                   for f in weight_folders)
        files: dict[str, int] = {}
        for folder in wanted:
            files |= _read_by_library(contents[folder]) | _choose_weights(contents[folder], half, None)
        return _hub(repo, files, half)
    return rule


def named_files(*paths: str) -> FileRule:
    """Files fetched one by one (`hf_hub_download`): LoRA and concept files, SAM and annotator `.pth`."""
    def rule(checkpoint: str, choice: FileChoice) -> Download:
        repo = published(checkpoint)
        missing = [path for path in paths if path not in repo.files]
        if missing:
            raise KeyError(f"{repo.repo} publishes no {', '.join(missing)}")
        return _hub(repo, {path: repo.files[path] for path in paths}, half=False)
    return rule


def url_file(nbytes: int) -> FileRule:
    """One file at a URL, cached by `torch.hub` under its file name (FaceNet's GitHub releases)."""
    def rule(url: str, choice: FileChoice) -> Download:
        return Download("url", url, {url.rsplit("/", 1)[-1]: nbytes})
    return rule


def model_pack(archive_bytes: int, members: dict[str, int]) -> FileRule:
    """A model pack fetched as one archive by its own library's downloader (insightface's `buffalo_l` zip);
    `members` are the unpacked files a load reads, with their sizes."""
    def rule(name: str, choice: FileChoice) -> Download:
        return Download("pack", name, dict(members), archive_bytes=archive_bytes)
    return rule


def bundled(what: str, choice: FileChoice) -> Download:
    """Weights that ship inside an installed package: nothing to fetch."""
    return Download("bundled", what)
