"""Every registry checkpoint loads through the hub code path from a cache laid out as the Hub's would be.

The tiny builds are filed under the real repo ids, commits and file names (`models/published/`); each load
here sees a view of that cache holding exactly the files its `Download` names for one device — the CPU's
(fp32) or the GPU's (`fp16` files where published, loaded in fp16 on this CPU) — and nothing else, read
by the hub profile with the network off. A loader that asks for a file the published repository lacks,
or one its plan forgot to fetch, fails here as it would on the Hub (or after `--download`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import models
from models import REGISTRY
from models.cache import ModelCache
from models.device import module_nbytes
from models.downloads import Caches
from models.hub import PUBLISHED_DIR, Download, folder_of, published
from models.settings import Settings
from models.tiny_hub import storage_folder, tiny_commit

HUB_SPECS = sorted(name for name, spec in REGISTRY.items() if spec.tiny_builder is not None)


def view_of(caches: Caches, downloads: list[Download], folder: Path) -> Caches:
    """A cache holding only `downloads`' files (links into the full tiny cache), refs and tree listings."""
    view = Caches(hub=folder / "hub", torch_hub=folder / "torch", insightface=folder / "insightface")
    for download in downloads:
        if download.kind == "hub":
            source = storage_folder(caches.hub_folder(), download.where)
            target = storage_folder(view.hub_folder(), download.where)
            for kept in ("refs", "trees"):
                shutil.copytree(source / kept, target / kept, dirs_exist_ok=True)
            commit = tiny_commit(published(download.where))
            pairs = [(source / "snapshots" / commit / p, target / "snapshots" / commit / p) for p in download.files]
        elif download.kind == "url":
            pairs = [(caches.torch_folder() / p, view.torch_folder() / p) for p in download.files]
        else:  # a model pack: its unpacked members
            pairs = [(caches.insightface_folder() / "models" / download.where / p,
                      view.insightface_folder() / "models" / download.where / p) for p in download.files]
        for original, link in pairs:
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(original)
    return view


def load_through_view(name: str, files_for: str, tmp_path: Path, safety_checker: bool = False):
    """Load `name` (and what it is built on) with the hub profile, offline, from a view of its files."""
    settings = Settings(profile="hub", offline=True, max_loaded_models=0, safety_checker=safety_checker)
    planner = ModelCache(REGISTRY, settings, caches=models.model_cache.caches(), files_for=files_for)
    names = [name, *_bases(name)]
    for each in names:
        models.model_cache.build_tiny(REGISTRY[each])
    view = view_of(models.model_cache.caches(), [planner.plan(REGISTRY[n])[0] for n in names], tmp_path)
    cache = ModelCache(REGISTRY, settings, caches=view, files_for=files_for)
    return cache, cache.get(name)


def _bases(name: str) -> list[str]:
    """The shared base a derived pipeline loads through `context.get` (SD-1.5 under ControlNet)."""
    return ["sd15"] if name.startswith("controlnet-") and "annotator" not in name else []


@pytest.mark.parametrize("files_for", ["cpu", "cuda"])
@pytest.mark.parametrize("name", HUB_SPECS)
def test_every_checkpoint_loads_its_published_files_through_the_hub_code_path(name, files_for, tmp_path):
    cache, handle = load_through_view(name, files_for, tmp_path)
    assert module_nbytes(handle) > 0 and cache.load_counts[name] == 1
    download, dtype = cache.plan(REGISTRY[name])
    if files_for == "cuda" and download.variant == "fp16":
        halved = {folder_of(p) for p in published(download.where).files if ".fp16" in Path(p).name}
        assert all(".fp16" in Path(p).name for p in download.files  # where the folder publishes fp16 files
                   if p.endswith((".safetensors", ".bin")) and folder_of(p) in halved), download
    assert dtype == (torch.float16 if files_for == "cuda" and not REGISTRY[name].dtype else dtype)


@pytest.mark.parametrize("name", ["sd15", "instruct-pix2pix", "gligen-text-box"])
def test_with_the_safety_checker_on_the_published_checker_is_loaded_and_counted(name, tmp_path):
    cache, pipe = load_through_view(name, "cpu", tmp_path, safety_checker=True)
    assert pipe.safety_checker is not None
    with_checker = cache.plan(REGISTRY[name])[0]
    without = ModelCache(REGISTRY, Settings(profile="hub", safety_checker=False)).plan(REGISTRY[name])[0]
    extra = set(with_checker.files) - set(without.files)
    assert extra and all(p.startswith("safety_checker/") for p in extra)
    assert published(REGISTRY[name].checkpoint).files.keys() >= extra
    assert with_checker.nbytes > without.nbytes + 1e9  # the checker is 1.2 GB in fp32


def test_by_default_no_safety_checker_is_fetched_or_loaded(tmp_path):
    cache, pipe = load_through_view("sd15", "cpu", tmp_path)
    assert pipe.safety_checker is None
    assert not any(p.startswith("safety_checker/") for p in cache.plan(REGISTRY["sd15"])[0].files)


OLD_LOADER_ARGUMENTS = [  # what the loaders asked for before they read the published layouts
    ("gligen-text-box", "StableDiffusionGLIGENPipeline", dict(use_safetensors=True)),
    ("gligen-inpainting-text-box", "StableDiffusionGLIGENPipeline", dict(use_safetensors=True)),
    ("controlnet-t2iadapter-sketch", "T2IAdapter", dict(use_safetensors=True)),
    ("instruct-pix2pix", "StableDiffusionInstructPix2PixPipeline", dict(use_safetensors=True, variant="fp16")),
    ("paint-by-example", "AutoencoderKL", dict(subfolder="vae", variant="fp16")),
]


@pytest.mark.parametrize("name, class_name, arguments", OLD_LOADER_ARGUMENTS)
def test_the_old_loader_arguments_fail_on_the_published_layout_as_they_would_on_the_hub(name, class_name, arguments,
                                                                                       tmp_path):
    """GLIGEN and the T2I-Adapters publish pickles only; InstructPix2Pix and Paint-by-Example no fp16 files."""
    import diffusers

    models.model_cache.build_tiny(REGISTRY[name])
    caches = models.model_cache.caches()
    repo = published(REGISTRY[name].checkpoint)
    with pytest.raises((OSError, ValueError)):
        getattr(diffusers, class_name).from_pretrained(repo.repo, revision=repo.revision, cache_dir=caches.hub,
                                                       local_files_only=True, **arguments)


def test_pickled_checkpoints_are_read_without_running_code(tmp_path):
    """A `.bin` whose pickle calls a function (what a tampered repository could hold) is refused."""
    name = "controlnet-t2iadapter-sketch"  # published as a pickle only
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    settings = Settings(profile="hub", offline=True)
    planner = ModelCache(REGISTRY, settings, caches=models.model_cache.caches())
    models.model_cache.build_tiny(REGISTRY[name])
    models.model_cache.build_tiny(REGISTRY["sd15"])
    downloads = [planner.plan(REGISTRY[n])[0] for n in (name, "sd15")]
    view = view_of(models.model_cache.caches(), downloads, tmp_path / "view")
    weights = next(view.hub_folder().rglob("diffusion_pytorch_model.bin"))
    weights.unlink()  # a link into the shared tiny cache: replace it, not what it points to
    torch.save({"weight": Payload()}, weights)
    with pytest.raises(models.ModelUnavailable, match="Unable to load weights") as refused:
        ModelCache(REGISTRY, settings, caches=view).get(name)
    causes, error = [], refused.value
    while error is not None:
        causes.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    assert "UnpicklingError" in causes  # torch.load(weights_only=True) refused the call
    assert not marker.exists()


def test_every_published_file_list_is_well_formed_and_says_where_it_was_read():
    files = sorted(PUBLISHED_DIR.glob("*--*.json"))
    hub_checkpoints = {spec.checkpoint for spec in REGISTRY.values() if "/" in spec.checkpoint
                       and "://" not in spec.checkpoint}
    assert hub_checkpoints <= {json.loads(path.read_text())["repo"] for path in files}
    for path in files:
        data = json.loads(path.read_text())
        assert path.name == data["repo"].replace("/", "--") + ".json"
        assert data["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", data["commit"]), path.name
        assert data["read_from"] and all(source.strip() for source in data["read_from"]), path.name
        assert data["files"] and all(isinstance(size, int) and size >= 0 for size in data["files"].values())
        assert set(data.get("stored_half", [])) <= set(data["files"]), path.name


# Tabs whose default request uses its models in turn: DeepFloyd IF encodes the prompt with T5-XXL (10.2 GiB in
# bfloat16) and only then loads its two stages, so where memory is short the cache unloads T5 (the oldest) for
# them. Their peak is the largest group, not the sum.
USED_IN_TURN = {"Imagen-style cascade (DeepFloyd IF)": (("if-t5-xxl",), ("if-i-m", "if-ii-m"))}


def test_every_tab_default_fits_a_16_gib_cpu_laptop():
    """Published sizes: on a CPU with 16 GiB the models a tab's default request loads fit the budget
    (three quarters of the memory), together, or one group at a time where the tab uses them in turn."""
    from demos import DEMOS
    from models.memory import BUDGET_SHARE

    laptop = BUDGET_SHARE * 16 * 2**30
    local = ModelCache(REGISTRY, Settings(profile="hub", safety_checker=False))  # a laptop's own run
    for demo in DEMOS:
        groups = USED_IN_TURN.get(demo.title, (demo.checkpoints,))
        assert sorted(n for group in groups for n in group) == sorted(demo.checkpoints), demo.title
        needed = max(sum(local.published_figures(REGISTRY[n], "cpu")[1] for n in group) for group in groups)
        assert needed <= laptop, f"{demo.title}: {needed / 2**30:.1f} GiB"


def test_gpu_files_are_fp16_only_where_the_repository_publishes_them():
    cache = models.model_cache
    for name in ("instruct-pix2pix", "paint-by-example", "gligen-text-box", "sd15", "controlnet-canny"):
        repo = published(REGISTRY[name].checkpoint)
        gpu = REGISTRY[name].files(repo.repo, models.hub.GPU_FILES)
        has_fp16 = any(".fp16." in p for p in repo.files)
        assert (gpu.variant == "fp16") == has_fp16, name
        assert set(gpu.files) <= set(repo.files)
        assert cache.published_figures(REGISTRY[name], "cuda")[1] < cache.published_figures(REGISTRY[name], "cpu")[1]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert os.environ["PP_MODELS"] == "tiny"


def test_the_readme_checkpoint_tables_are_the_ones_the_data_gives():
    """README.md shows what `python scripts/checkpoint_table.py --write` computes from these file lists."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("checkpoint_table", PUBLISHED_DIR.parents[1] / "scripts" /
                                                  "checkpoint_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = (PUBLISHED_DIR.parents[1] / "README.md").read_text()
    assert script.readme_with_table(readme) == readme, "run: python scripts/checkpoint_table.py --write"
