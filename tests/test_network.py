"""The network as a school has it: a Hub that never answers, no Hub at all, and the class preflight.

A local socket that accepts connections and never answers stands in for the Hub behind a firewall or a
captive proxy (`HF_ENDPOINT`). The hub profile runs in subprocesses, as `python app.py` would, over a
Hugging Face cache laid out as the Hub's (the tiny cache, filed under the real repo ids and commits).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import models
from models import REGISTRY
from models.cache import ModelCache
from models.downloads import Caches
from models.settings import Settings
from tests.conftest import ROOT

CACHED = ["clip-vit-base-patch32", "sd15"]


class BlackHole(str):
    """The address of the black hole, with the connections it has accepted so far."""
    connections: list


@pytest.fixture(scope="module")
def black_hole():
    """An address that accepts TCP connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    address = BlackHole(f"http://127.0.0.1:{server.getsockname()[1]}")
    address.connections = held
    yield address
    stop.set()
    for connection in held:
        connection.close()
    server.close()


@pytest.fixture(scope="module")
def hub_shaped_cache():
    """The tiny cache's folders, with the models these tests load built into them."""
    for name in CACHED:
        models.model_cache.build_tiny(REGISTRY[name])
    return models.model_cache.caches()


def hub_env(cache: Caches | Path, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of `python app.py` with the published checkpoints (hub profile), online."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "PP_OFFLINE")}
    hub = cache.hub_folder() if isinstance(cache, Caches) else cache
    env.update(PP_MODELS="hub", HF_HUB_CACHE=str(hub), PP_INSIGHTFACE_ROOT=str(Path(hub).parent / "insightface"),
               TORCH_HOME=str(Path(hub).parent / "torch"), **extra)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


LOAD_AND_TIME = """
import time, models
started = time.monotonic()
for name in {names!r}:
    models.get(name)
print(f"loaded in {{time.monotonic() - started:.1f}} s")
"""


def test_cached_checkpoints_load_at_once_when_the_hub_never_answers(black_hole, hub_shaped_cache):
    """Pinned commits whose files are cached are read with the network untouched: the Hub is never even
    connected to (a bound on the seconds alone would depend on how busy the machine is)."""
    connections_before = len(black_hole.connections)
    done = run(["-c", LOAD_AND_TIME.format(names=CACHED)], hub_env(hub_shaped_cache, black_hole))
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(black_hole.connections) == connections_before, "the load connected to the Hub"
    seconds = float(done.stdout.split("loaded in ")[1].split()[0])
    assert seconds < 60, done.stdout  # and it waited on nothing else (a stalled request would hang)


def test_a_missing_checkpoint_says_the_hub_cannot_be_reached_within_15_seconds(black_hole, tmp_path):
    started = time.monotonic()
    done = run(["app.py", "--download", "--model", "clip-vit-base-patch32"], hub_env(tmp_path / "empty", black_hole))
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert f"Cannot reach the Hugging Face Hub at {black_hole}" in done.stdout, done.stdout[-2000:]
    assert elapsed < 15 + 10, elapsed  # the probe's 8 s, plus the interpreter and imports


@pytest.mark.parametrize("name", ["arcface-buffalo-l", "facenet-vggface2"])
def test_downloads_outside_the_hub_are_bounded_too(name, black_hole, tmp_path, monkeypatch):
    """insightface's pack and FaceNet's release file come from GitHub, with downloaders that have no timeout
    of their own: a server that never answers is reported by the URL within 15 s, and nothing half-written
    is left to pass for a download."""
    from dataclasses import replace

    monkeypatch.setattr("insightface.utils.storage.model_zoo_download_url", lambda file: f"{black_hole}/{file}")
    spec = REGISTRY[name]
    if spec.checkpoint.startswith("https://"):
        spec = replace(spec, checkpoint=f"{black_hole}/{spec.checkpoint.rsplit('/', 1)[-1]}")
    caches = Caches(hub=tmp_path / "hub", torch_hub=tmp_path / "torch", insightface=tmp_path / "insightface")
    cache = ModelCache({name: spec}, Settings(profile="hub", offline=False), caches=caches)
    started = time.monotonic()
    with pytest.raises(models.ModelUnavailable, match=f"Cannot download {black_hole}/"):
        cache.get(name)
    assert time.monotonic() - started < 15
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


def test_offline_check_answers_in_seconds_from_the_cache(hub_shaped_cache):
    started = time.monotonic()
    done = run(["app.py", "--offline", "--check", "--model", "sd15", "--model", "clip-vit-base-patch32"],
               hub_env(hub_shaped_cache))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.count(" ready") >= 2 and "All ready." in done.stdout
    assert time.monotonic() - started < 30


def test_offline_a_model_that_is_not_cached_is_refused_with_the_command_that_fetches_it(tmp_path):
    cache = ModelCache(REGISTRY, Settings(profile="hub", offline=True), caches=Caches(hub=tmp_path))
    with pytest.raises(models.ModelUnavailable, match=r"openai/clip-vit-base-patch32 is not fully in this "
                                                      r"machine's cache.*python app.py --download --model "
                                                      r"clip-vit-base-patch32"):
        cache.get("clip-vit-base-patch32")


def test_the_tiny_preflight_reports_what_is_missing_then_download_builds_it(tmp_path):
    env = {**os.environ, "PP_TINY_DIR": str(tmp_path)}
    before = run(["app.py", "--models", "tiny", "--check", "--tab", "CLIP zero-shot"], env)
    assert before.returncode == 1 and "build 0.61 GB" in before.stdout and "All ready." not in before.stdout
    fetched = run(["app.py", "--models", "tiny", "--download", "--tab", "CLIP zero-shot"], env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr[-2000:]
    assert "clip-vit-base-patch32: done" in fetched.stdout and "All ready." in fetched.stdout


def test_a_lesson_preflight_lists_every_model_its_steps_load():
    done = run(["app.py", "--models", "tiny", "--check", "--lesson", "controlling-generation"], dict(os.environ))
    for name in ("sd15", "controlnet-canny", "controlnet-t2iadapter-sketch", "gligen-text-box"):
        assert name in done.stdout, done.stdout


@pytest.fixture
def fake_hub(hub_shaped_cache):
    from tests.fake_hub import FakeHub

    hub = FakeHub(hub_shaped_cache.hub_folder(), cut_after={UNET: 4096})  # every GET of the UNet drops
    yield hub
    hub.close()


UNET = "unet/diffusion_pytorch_model.safetensors"


def test_download_fetches_exactly_this_devices_files_with_progress_and_a_rerun_only_what_is_missing(fake_hub,
                                                                                                     tmp_path):
    """`--download` against a Hub on localhost. A connection that keeps dropping in the middle of the UNet fails
    the run with a clear message, keeping every file that did arrive; the rerun fetches only the UNet. What
    arrives is exactly this device's files, and they then load offline."""
    env = hub_env(tmp_path / "hub", fake_hub.url)
    first = run(["app.py", "--download", "--model", "sd15"], env)
    assert first.returncode == 1 and "sd15: FAILED" in first.stdout and "resumes it" in first.stdout, first.stdout
    fake_hub.cut_after.clear()
    fetched_first = set(downloaded(fake_hub))
    fake_hub.requests.clear()
    second = run(["app.py", "--download", "--model", "sd15"], env)
    assert second.returncode == 0 and "All ready." in second.stdout, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Downloading stable-diffusion-v1-5/stable-diffusion-v1-5" in second.stdout  # progress, by bytes on disk
    assert downloaded(fake_hub) == [UNET]  # the rerun fetched only what the first could not
    planned = ModelCache(REGISTRY, Settings(profile="hub")).plan(REGISTRY["sd15"])[0].files
    assert fetched_first == set(planned)  # what this device reads: no fp16 files, no safety checker, no .ckpt
    snapshot = next((tmp_path / "hub").glob("models--stable-diffusion-v1-5--*/snapshots/*"))
    assert (snapshot / UNET).read_bytes() == (hub_shaped_cache_snapshot(REGISTRY["sd15"].checkpoint) / UNET).read_bytes()
    loaded = run(["-c", LOAD_AND_TIME.format(names=["sd15"])], {**env, "PP_OFFLINE": "1"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]


def downloaded(hub) -> list[str]:
    """The repository files the fake Hub was asked for (GET), once each."""
    return list(dict.fromkeys(path.split("/resolve/")[1].split("/", 1)[1] for method, path, _ in hub.requests
                              if method == "GET" and "/resolve/" in path))


def hub_shaped_cache_snapshot(repo: str) -> Path:
    from models.hub import published
    from models.tiny_hub import snapshot_folder

    return snapshot_folder(models.model_cache.caches().hub_folder(), published(repo))
