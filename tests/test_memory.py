"""Memory that fits the machine: a model is sized before it loads, others make room, and one that cannot fit
is refused with its size, what is free and the smaller choice. The machine's memory is faked."""
from __future__ import annotations

import pytest

import models
from models import REGISTRY
from models.cache import ModelCache
from models.downloads import Caches
from models.hub import Download
from models.memory import GIB
from models.registry import ModelSpec
from models.settings import Settings


def fake_machine(monkeypatch, total_gib: float, free_gib: float) -> None:
    monkeypatch.setattr("models.cache.machine_memory", lambda device_type: (int(total_gib * GIB),
                                                                             int(free_gib * GIB)))


def published_sized(tmp_path) -> ModelCache:
    """The hub profile over an empty cache: sizes are the published ones, nothing can be fetched."""
    return ModelCache(REGISTRY, Settings(profile="hub", offline=True), caches=Caches(hub=tmp_path))


def test_a_7b_model_on_a_16_gib_laptop_is_refused_before_loading_with_its_size_and_the_smaller_choice(
        monkeypatch, tmp_path):
    fake_machine(monkeypatch, 16, 12)
    with pytest.raises(models.ModelUnavailable) as refused:
        published_sized(tmp_path).get("instructblip-vicuna-7b")
    message = str(refused.value)
    assert "does not fit on this machine" in message and "bfloat16" in message
    assert "Choose llava-interleave-qwen-0.5b instead (about 3.7 GiB)" in message
    needed = float(message.split("needs about ")[1].split(" GiB")[0])
    assert 16 < needed < 19  # 7.9B parameters in bfloat16, plus a run's margin


def test_a_model_that_fits_is_not_refused_for_memory(monkeypatch, tmp_path):
    fake_machine(monkeypatch, 16, 12)
    with pytest.raises(models.ModelUnavailable, match="not fully in this machine's cache"):  # offline: no files
        published_sized(tmp_path).get("blip2-opt-2.7b")  # 7.5 GB in bfloat16: fits, then lacks its files


def test_free_memory_counts_too_not_only_the_budget(monkeypatch, tmp_path):
    fake_machine(monkeypatch, 64, 2)  # a big machine whose memory other programs hold
    with pytest.raises(models.ModelUnavailable, match=r"sd15 .* 2.0 GiB is free for models"):
        published_sized(tmp_path).get("sd15")


def test_older_models_are_unloaded_to_make_room_and_dependencies_stay(monkeypatch, tmp_path):
    def one_gib_model(name: str, loader=None) -> ModelSpec:
        return ModelSpec(name=name, checkpoint=f"org/{name}", loader=loader or (lambda context: object()),
                         tiny_builder=None, files=lambda checkpoint, choice: Download(
                             "bundled", checkpoint, {"model.safetensors": GIB}))

    base = one_gib_model("base")
    derived = one_gib_model("derived", lambda context: context.get("base"))
    specs = {s.name: s for s in (base, derived, one_gib_model("a"), one_gib_model("b"))}
    cache = ModelCache(specs, Settings(profile="hub", max_loaded_models=0))
    monkeypatch.setattr(cache, "_resident_bytes", lambda: sum(1.15 * GIB for _ in cache.loaded()))
    fake_machine(monkeypatch, 4, 4)  # a budget of 3 GiB: two models of 1.15 GiB fit, not three
    cache.get("a")
    cache.get("b")
    assert [m.name for m in cache.loaded()] == ["a", "b"]
    cache.get("derived")  # needs room for itself, then for its base: a and b go
    assert {m.name for m in cache.loaded()} == {"base", "derived"}
    cache.get("a")  # the least recently used of derived and its base goes, never the base it holds
    assert "base" in {m.name for m in cache.loaded()} and cache.load_counts["base"] == 1
