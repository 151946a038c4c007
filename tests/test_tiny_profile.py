"""Every registered model builds as a tiny checkpoint, saves, and reloads through its real loader."""
from __future__ import annotations

from pathlib import Path

import pytest

from models import REGISTRY
from models.cache import ModelCache
from models.device import module_nbytes
from models.settings import Settings


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_tiny_checkpoint_builds_saves_and_loads_through_the_hub_loader(name, tmp_path):
    cache = ModelCache(REGISTRY, Settings(profile="tiny", tiny_dir=tmp_path, max_loaded_models=0))
    handle = cache.get(name)
    folder = Path(cache.source_for(REGISTRY[name]))
    files = {path.name for path in folder.rglob("*") if path.is_file()}
    pickles = [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    if REGISTRY[name].pickled:  # only where the published repo ships nothing else
        assert pickles, files
    else:  # weights are safetensors (ONNX where the published pack is ONNX), never pickles
        assert any(f.endswith((".safetensors", ".onnx")) for f in files), files
        assert not pickles, files
    assert module_nbytes(handle) > 0
    assert cache.get(name) is handle and cache.load_counts[name] == 1


def test_clip_tiny_layout_mirrors_the_openai_repo(tmp_path):
    REGISTRY["clip-vit-base-patch32"].tiny_builder(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= files
