"""The model cache: lazy, shared, loaded once under concurrency, evicting, with named errors."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from models.cache import ModelCache, tiny_fingerprint
from models.errors import ModelUnavailable
from models.hub import Download
from models.registry import ModelSpec
from models.settings import Settings

BUILDS: list[Path] = []


def write_marker(folder: Path) -> None:
    (folder / "weights.txt").write_text("tiny")
    BUILDS.append(folder)


def spec(name: str, loader, download_gb: float = 1.5) -> ModelSpec:
    """A model whose files need no fetching (as if bundled in a package), of a given published size."""
    return ModelSpec(name=name, checkpoint=f"org/{name}", loader=loader, tiny_builder=write_marker,
                     files=lambda checkpoint, choice: Download("bundled", checkpoint, {"w": int(download_gb * 1e9)}))


def read_marker(context) -> dict:
    return {"weights": "tiny", "source": context.source}


def make_cache(tmp_path: Path, *specs: ModelSpec, **settings) -> ModelCache:
    settings.setdefault("profile", "tiny")
    return ModelCache({s.name: s for s in specs}, Settings(tiny_dir=tmp_path, **settings))


def test_same_object_twice_and_loaded_once(tmp_path):
    cache = make_cache(tmp_path, spec("a", read_marker))
    first = cache.get("a")
    assert first == {"weights": "tiny", "source": "org/a"}
    assert cache.get("a") is first
    assert cache.load_counts["a"] == 1


def test_tiny_caches_built_by_other_code_are_never_reused(tmp_path):
    stale = tmp_path / "0123456789ab" / "built" / "a"  # a cache another code version built
    stale.parent.mkdir(parents=True)
    stale.write_text("org/a\n")
    cache = make_cache(tmp_path, spec("a", read_marker))
    built_before = len(BUILDS)
    cache.get("a")
    assert len(BUILDS) == built_before + 1  # built afresh for this code
    assert (tmp_path / tiny_fingerprint() / "built" / "a").exists()
    assert cache.caches().hub == tmp_path / tiny_fingerprint() / "hub"
    assert len(tiny_fingerprint()) == 12 and tiny_fingerprint() != "0123456789ab"
    make_cache(tmp_path, spec("a", read_marker)).get("a")  # another process with the same code: reused
    assert len(BUILDS) == built_before + 1


def test_concurrent_first_requests_load_once(tmp_path):
    def slow_loader(context):
        time.sleep(0.3)
        return object()

    cache = make_cache(tmp_path, spec("slow", slow_loader))
    barrier = threading.Barrier(8)
    results = []

    def request():
        barrier.wait()
        results.append(cache.get("slow"))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert cache.load_counts["slow"] == 1


def test_evicts_least_recently_used_above_count_budget(tmp_path):
    cache = make_cache(tmp_path, *(spec(n, lambda c: object()) for n in "abc"), max_loaded_models=2)
    a = cache.get("a")
    cache.get("b")
    assert cache.get("a") is a  # a is now the most recently used
    cache.get("c")
    assert [m.name for m in cache.loaded()] == ["a", "c"]
    assert not cache.is_loaded("b")
    cache.get("b")
    assert cache.load_counts["b"] == 2  # evicted handles are reloaded on demand


def test_evicts_above_memory_budget(tmp_path):
    def two_mib(context):
        return torch.nn.Linear(1024, 512, bias=False)  # 512Ki float32 = 2 MiB

    cache = make_cache(tmp_path, *(spec(n, two_mib) for n in "xyz"), max_loaded_models=0,
                       max_loaded_gib=5 / 1024)  # 5 MiB holds two of them
    for name in "xyz":
        cache.get(name)
    assert [m.name for m in cache.loaded()] == ["y", "z"]
    assert all(m.nbytes == 2 * 2**20 for m in cache.loaded())


def test_failing_loader_gives_named_error_and_can_retry(tmp_path):
    attempts = []

    def flaky(context):
        attempts.append(context.source)
        if len(attempts) == 1:
            raise ConnectionError("network unreachable")
        return "ok"

    cache = make_cache(tmp_path, spec("flaky", flaky, download_gb=4.2), profile="hub")
    with pytest.raises(ModelUnavailable) as error:
        cache.get("flaky")
    message = str(error.value)
    assert "org/flaky" in message and "4.20 GB" in message and "--models tiny" in message
    assert "network unreachable" in message
    assert not cache.is_loaded("flaky")
    assert cache.get("flaky") == "ok"
    assert attempts == ["org/flaky", "org/flaky"]  # the loader gets the repo id


def test_dependencies_are_shared_not_reloaded(tmp_path):
    base = spec("base", lambda c: object())
    derived_a = spec("derived-a", lambda c: ("a", c.get("base")))
    derived_b = spec("derived-b", lambda c: ("b", c.get("base")))
    cache = make_cache(tmp_path, base, derived_a, derived_b)
    (_, base_of_a), (_, base_of_b) = cache.get("derived-a"), cache.get("derived-b")
    assert base_of_a is base_of_b is cache.get("base")
    assert cache.load_counts["base"] == 1


def test_unknown_model_is_a_user_error(tmp_path):
    cache = make_cache(tmp_path, spec("a", read_marker))
    with pytest.raises(ModelUnavailable, match="Unknown model 'nope'.*Registered models: a"):
        cache.get("nope")


def test_progress_callback_names_the_checkpoint_on_first_load_only(tmp_path):
    cache = make_cache(tmp_path, spec("a", read_marker, download_gb=0.6), profile="hub")
    messages = []

    def progress(fraction, desc=""):
        messages.append(desc)

    cache.get("a", progress)
    cache.get("a", progress)
    assert len(messages) == 1 and "org/a" in messages[0] and "0.60 GB" in messages[0]


def test_free_all_releases_handles(tmp_path):
    cache = make_cache(tmp_path, spec("a", lambda c: object()))
    cache.get("a")
    cache.clear()
    assert cache.loaded() == []


def test_a_shared_dependency_is_evicted_after_its_dependents(tmp_path):
    base = spec("base", lambda c: object())
    derived = [spec(f"derived-{n}", lambda c: ("derived", c.get("base"))) for n in "ab"]
    other = spec("other", lambda c: object())
    cache = make_cache(tmp_path, base, *derived, other, max_loaded_models=2)
    cache.get("derived-a")  # loads base first, then derived-a
    cache.get("derived-a")  # a hit keeps its base at least as recent
    cache.get("other")  # over budget: derived-a goes, not the base it holds
    assert [m.name for m in cache.loaded()] == ["base", "other"]
    cache.get("derived-b")
    assert cache.load_counts["base"] == 1
